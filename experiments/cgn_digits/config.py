"""The CGN digits experiments' config (seed 001's coloured, double-coloured and wildlife MNIST on
scikit-learn's digits): the variant, the data splits, the CGN and its two sampling strategies, the arms."""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, model_validator

from datagen.generators.cgn_config import CgnTrainConfig
from datagen.limits import MAX_ACTORS, MAX_SEED
from datagen.strategy_config import StrategyConfig
from experiments.harness.config import ExperimentBase
from trainers.config import TrainConfig
from trainers.limits import MAX_BATCH_SIZE

RANDOM_FEATURES_FILE = "texture-vgg19.pt"
MAX_DIGITS_IMAGE_SIZE_PX = 256

Variant = Literal["coloured", "double_coloured", "textured"]
ArmName = Literal["original", "observational", "counterfactual", "original_counterfactual"]
ARMS: tuple[ArmName, ...] = ("original", "observational", "counterfactual", "original_counterfactual")


class CgnDigitsDataConfig(BaseModel):
    """How the 1,797 digits become a confounded training set, a validation set and a test set."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    seed: int = Field(default=0, ge=0, le=MAX_SEED, description="fixes the looks (colours, textures), the splits and every draw")
    image_size: PositiveInt = Field(default=32, le=MAX_DIGITS_IMAGE_SIZE_PX, description="side of the RGB images, px")
    margin_px: NonNegativeInt = Field(default=4, le=64, description=(
        "empty border around the digit (MNIST's 28 px frame holds a 20 px digit): the CGN's edge loss assumes one"))
    validation_fraction: float = Field(default=0.15, gt=0, lt=0.5, description="share of the digits in the validation set")
    test_fraction: float = Field(default=0.25, gt=0, lt=0.5, description="share of the digits in the test set")

    @model_validator(mode="after")
    def _digits_fit(self) -> "CgnDigitsDataConfig":
        if self.validation_fraction + self.test_fraction >= 0.8:
            raise ValueError("validation_fraction + test_fraction must be < 0.8, leaving digits to train on "
                             f"(got {self.validation_fraction + self.test_fraction:.2f})")
        if 2 * self.margin_px >= self.image_size // 2:
            raise ValueError(f"margin_px must leave the digit at least half the image (got {self.margin_px} of {self.image_size} px)")
        return self


class ExperimentConfig(ExperimentBase):
    """One CGN digits run; each arm and seed becomes one genint job."""

    kind: Literal["cgn_digits"] = Field(default="cgn_digits", description="which experiment this config runs (experiments/registry.py)")
    variant: Variant = Field(description=(
        "coloured: stroke colour tied to the class (C-MNIST); double_coloured: stroke and background colour tied "
        "(DC-MNIST); textured: stroke and background textures tied, cut from scikit-learn's sample photographs (W-MNIST)"))
    arms: list[ArmName] = Field(default=list(ARMS), min_length=1)
    data: CgnDigitsDataConfig = Field(default_factory=CgnDigitsDataConfig)
    cgn: CgnTrainConfig = Field(default_factory=lambda: CgnTrainConfig(mask_target=0.17), description="the CGN, trained on the training set")
    random_texture_features: bool = Field(default=False, description=(
        "save a seeded random-initialised VGG-19 as cgn.texture_features (no pretrained one can be downloaded; "
        "random convolutions' Gram matrices still describe textures) and use it when cgn.texture_weight > 0"))
    observational: StrategyConfig = Field(default_factory=lambda: StrategyConfig(kind="observational", truncation=1.0, seeds_per_class=200))
    counterfactual: StrategyConfig = Field(default_factory=lambda: StrategyConfig(
        kind="counterfactual", truncation=1.0, seeds_per_class=20, counterfactuals_per_shape=10))
    datagen_actors: PositiveInt = Field(default=1, le=MAX_ACTORS)
    batch_size: PositiveInt = Field(default=64, le=MAX_BATCH_SIZE, description="images per step (half from each stream for original_counterfactual)")
    train: TrainConfig = Field(description="the classifier and its optimisation; each arm sets streams and seed")

    @model_validator(mode="after")
    def _strategies_fit(self) -> "ExperimentConfig":
        if self.observational.kind != "observational":
            raise ValueError(f"observational.kind must be observational (got {self.observational.kind})")
        if self.counterfactual.kind != "counterfactual":
            raise ValueError(f"counterfactual.kind must be counterfactual (got {self.counterfactual.kind})")
        if self.train.num_classes != 10:
            raise ValueError(f"train.num_classes must be 10, the digits' classes (got {self.train.num_classes})")
        if self.cgn.model.image_size != self.data.image_size:
            raise ValueError(f"cgn.model.image_size must equal data.image_size (got {self.cgn.model.image_size} and {self.data.image_size})")
        return self

    @model_validator(mode="before")
    @classmethod
    def _random_features_path(cls, raw):
        """With ``random_texture_features``, the CGN's texture features are the file the experiment saves."""
        if isinstance(raw, dict) and raw.get("random_texture_features") is True and isinstance(raw.get("cgn", {}), dict):
            cgn = dict(raw.get("cgn") or {})
            if cgn.get("texture_features") is None and isinstance(raw.get("output_dir"), (str, Path)):
                cgn["texture_features"] = str(Path(raw["output_dir"]) / RANDOM_FEATURES_FILE)
            raw = {**raw, "cgn": cgn}
        return raw
