"""The Colored Digits experiment's config: data splits, the CVAE and its two sampling strategies, the CGN and
its counterfactual strategy, the arms' training."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator, model_validator

from cluster.errors import ConfigError
from cluster.explain_config import ExplainConfig
from cluster.strategy_search_config import StrategyGrid, grid_strategies
from datagen.directions_config import DirectionsConfig
from datagen.generators.cgn_config import CgnTrainConfig
from datagen.generators.cvae_config import CvaeTrainConfig
from datagen.limits import MAX_ACTORS, MAX_SAMPLES, MAX_SEED
from datagen.strategy_config import StrategyConfig
from experiments.harness.config import ExperimentBase
from trainers.config import ObjectiveConfig, TrainConfig
from trainers.limits import MAX_BATCH_SIZE

# The 1,797 digits are held in memory at this side: 256 px is already ~1 GB of float pixels.
MAX_DIGITS_IMAGE_SIZE_PX = 256
# 10 classes x 2 colours leave 3 of the palette's 23 to hold out, one at least for validation and the test each.
MAX_COLOURS_PER_CLASS = 2

ArmName = Literal["original", "observational", "interventional", "irm", "counterfactual", "interventional_pairs", "random_pairs"]
# The default arms are the paper's Table 5; the CGN's counterfactual arm (seed 001) is asked for by name.
ARMS: tuple[ArmName, ...] = ("original", "observational", "interventional", "irm")


class DigitsDataConfig(BaseModel):
    """How the 1,797 digits become a confounded training set, a validation set and two test sets."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    seed: int = Field(default=0, ge=0, le=MAX_SEED, description="fixes the palette, the splits and every background draw")
    image_size: PositiveInt = Field(default=32, le=MAX_DIGITS_IMAGE_SIZE_PX, description="side of the RGB images, px (upsampled from 8x8)")
    confounded_test_fraction: float = Field(default=0.2, gt=0, lt=0.5, description="share of the digits in the confounded test set")
    causal_test_fraction: float = Field(default=0.2, gt=0, lt=0.5, description="share of the digits in the causal test set")
    validation_fraction: float = Field(default=0.1, gt=0, lt=0.5, description="share of the digits in the validation set, drawn like the causal test")
    colours_per_class: int = Field(default=2, ge=1, le=MAX_COLOURS_PER_CLASS, description=(
        "background colours tied to each class in training: 2 as the paper's text says, 1 as the authors' code runs"))

    @model_validator(mode="after")
    def _training_digits_remain(self) -> "DigitsDataConfig":
        held_out = self.confounded_test_fraction + self.causal_test_fraction + self.validation_fraction
        if held_out >= 0.9:
            raise ValueError("held-out fractions (confounded_test_fraction + causal_test_fraction + validation_fraction) "
                             f"must sum to < 0.9, leaving digits to train on (got {held_out:.2f})")
        return self


class BoundSearchConfig(BaseModel):
    """The causal-bound search that chooses the interventional arm's strategy (analyses.py): every
    strategy of ``grid`` over ``interventional`` is scored on the validation stream with the original
    arm's first classifier as the feature extractor; the highest bound generates the interventional stream."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    grid: StrategyGrid
    samples_per_class: PositiveInt = Field(default=100, le=MAX_SAMPLES, description="images generated per class and strategy")
    temperature: PositiveFloat = Field(default=1.0, description="features are divided by it before the softmax (the authors: 1)")
    estimate: Literal["nearest", "sum"] = Field(default="nearest", description="the paper's nearest-neighbour approximation, or the exact sum")


class ExperimentConfig(ExperimentBase):
    """Everything one Colored Digits run needs; each arm and seed becomes one genint job."""

    kind: Literal["colored_digits"] = Field(default="colored_digits", description="which experiment this config runs (experiments/registry.py)")
    arms: list[ArmName] = Field(default=list(ARMS), min_length=1)
    data: DigitsDataConfig = Field(default_factory=DigitsDataConfig)
    generator: CvaeTrainConfig = Field(default_factory=CvaeTrainConfig, description="the CVAE, trained on the training set")
    directions: DirectionsConfig = Field(default_factory=lambda: DirectionsConfig(samples=2000, components=2, batch_size=500, regression_samples=2000))
    observational: StrategyConfig = Field(default_factory=lambda: StrategyConfig(kind="observational", truncation=1.0, seeds_per_class=200))
    interventional: StrategyConfig = Field(default_factory=lambda: StrategyConfig(
        kind="intervention", truncation=1.0, top_k=2, components_per_seed=2, offsets_per_component=1, ranges="spread", seeds_per_class=100))
    # The digits fill the 32 px frame (a fifth of their strokes lie within 3 px of the border), so the
    # edge loss, which assumes a margin around the shape, is off here.
    cgn: CgnTrainConfig = Field(default_factory=lambda: CgnTrainConfig(edge_weight=0.0), description=(
        "the CGN (seed 001) of the counterfactual arm, trained on the training set"))
    counterfactual: StrategyConfig = Field(default_factory=lambda: StrategyConfig(
        kind="counterfactual", truncation=1.0, seeds_per_class=20, counterfactuals_per_shape=10), description=(
        "the counterfactual arm's stream: CGN shapes of each class with texture and background classes drawn per image"))
    datagen_actors: PositiveInt = Field(default=1, le=MAX_ACTORS, description="generator actors writing the two generated streams")
    batch_size: PositiveInt = Field(default=64, le=MAX_BATCH_SIZE, description="images per step; IRM takes half from each colour environment")
    train: TrainConfig = Field(description="the classifier and its optimisation; each arm sets streams, objective and seed")
    irm: ObjectiveConfig = Field(default_factory=lambda: ObjectiveConfig(name="irm", irm_weight=10.0, irm_anneal_steps=50))
    gradient_supervision: ObjectiveConfig = Field(
        default_factory=lambda: ObjectiveConfig(name="gradient_supervision", gs_lambda=1.0), description=(
            "the pair arms' objective (seed 002): interventional_pairs trains on the interventional strategy's images with "
            "each one's other-class partner (same latent), random_pairs (the control) on unrelated other-class partners"))
    search: BoundSearchConfig | None = Field(default=None, description="choose the interventional strategy by the causal bound; "
                                             "None: use interventional as written")
    explain: ExplainConfig = Field(default_factory=lambda: ExplainConfig(device="cpu"), description=(
        "the report's explanations of every classifier on the validation split (explanations.py): E[|grad|] along "
        "background colour with its permutation test, and GradCAM's IoU with the stroke masks; stream and colours are "
        "the experiment's own (validation, class colour to another class's)"))

    @field_validator("gradient_supervision", mode="before")
    @classmethod
    def _named_gradient_supervision(cls, raw):
        # A section given in part (``--set gradient_supervision.gs_lambda=10``) is still gradient supervision.
        return {"name": "gradient_supervision", **raw} if isinstance(raw, dict) else raw

    @model_validator(mode="after")
    def _strategies_fit_their_arms(self) -> "ExperimentConfig":
        if self.observational.kind != "observational":
            raise ValueError(f"observational.kind must be observational (got {self.observational.kind})")
        if self.interventional.kind != "intervention":
            raise ValueError(f"interventional.kind must be intervention (got {self.interventional.kind})")
        if self.counterfactual.kind != "counterfactual":
            raise ValueError(f"counterfactual.kind must be counterfactual (got {self.counterfactual.kind})")
        if self.irm.name != "irm":
            raise ValueError(f"irm.name must be irm (got {self.irm.name})")
        if self.gradient_supervision.name != "gradient_supervision":
            raise ValueError(f"gradient_supervision.name must be gradient_supervision (got {self.gradient_supervision.name})")
        if "irm" in self.arms and self.data.colours_per_class < 2:
            raise ValueError("arms: irm needs data.colours_per_class >= 2, since its environments are a class's colours "
                             f"(got {self.data.colours_per_class}); leave irm out of arms")
        if self.search is not None:
            if "original" not in self.arms:
                raise ValueError("search needs the original arm in arms: its first classifier is the search's feature extractor")
            try:  # every grid point must be a valid strategy before anything trains
                grid_strategies(self.interventional, self.search.grid, "search.grid", "interventional")
            except ConfigError as error:
                raise ValueError(str(error)) from None
        if self.train.num_classes != 10:
            raise ValueError(f"train.num_classes must be 10, the digits' classes (got {self.train.num_classes})")
        return self
