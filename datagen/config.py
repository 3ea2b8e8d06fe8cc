"""Configuration of the generation service: generator, directions, strategy and the actor pool."""

from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationInfo,
    field_validator,
)

from datagen.directions_config import DirectionsConfig
from datagen.generators.cgn_config import CgnTrainConfig
from datagen.generators.cvae_config import CvaeTrainConfig
from datagen.limits import MAX_ACTORS, MAX_BATCH_SIZE, MAX_CLASSES, MAX_SAMPLES, MAX_SEED
from datagen.strategy_config import StrategyConfig
from datagen.transfer.config import TransferStageConfig
from shards.config import StreamName


# Generators whose mechanisms take their own classes, so they can compose counterfactuals.
COUNTERFACTUAL_KINDS = ("cgn",)


class GeneratorConfig(BaseModel):
    """Which generator makes the images and where its weights come from."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: Literal["biggan", "cvae", "cgn"] = "biggan"
    weights: str | None = Field(
        default=None,
        description="BigGAN: a model name (biggan-deep-128/256/512, downloads) or a local directory; "
        "CVAE, CGN: a directory; default biggan-deep-256 or OUTPUT/generator for the CVAE and the CGN",
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(default="bf16", description="on CUDA; CPU always runs fp32")
    train: CvaeTrainConfig = Field(default_factory=CvaeTrainConfig, description="`genint generator train` (CVAE)")
    cgn_train: CgnTrainConfig = Field(default_factory=CgnTrainConfig, description="`genint generator train` (CGN)")
    train_stream: StreamName = Field(default="original", description="the stream the CVAE or CGN is trained on")


class DatagenConfig(BaseModel):
    """The generator actor pool and what each actor generates."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    actors: NonNegativeInt = Field(default=1, le=MAX_ACTORS, description="generator actors; 0 turns generation off")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    start: Literal["with_training", "after_trainer_ready"] = Field(
        default="with_training",
        description="genint run: start the actors beside the trainer, or once its workers are placed and have "
        "restored their checkpoint (the trainer gets a small cluster's resources first; training sees every "
        "generated sample arrive)",
    )
    actor_resources: dict[str, PositiveFloat] = Field(
        default_factory=dict, description="custom Ray resources each actor requests, e.g. {datagen: 1}"
    )
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    directions: DirectionsConfig = Field(default_factory=DirectionsConfig)
    strategy: StrategyConfig = Field(default_factory=lambda: StrategyConfig(preset="paper"), validate_default=True)
    stream: StreamName = "interventional"
    classes: list[Annotated[NonNegativeInt, Field(lt=MAX_CLASSES)]] | None = Field(
        default=None, max_length=MAX_CLASSES, description="classes to generate; default all"
    )
    seeds_per_unit: PositiveInt = Field(default=10, le=MAX_SAMPLES, description="seeds per work unit (the unit of resume)")
    seed: int = Field(default=0, ge=0, le=MAX_SEED, description="job seed: with the unit it fixes every latent and offset")
    batch_size: PositiveInt = Field(default=32, le=MAX_BATCH_SIZE, description="images per generator forward pass")
    image_format: Literal["jpg", "png"] = "jpg"
    jpeg_quality: int = Field(default=95, ge=1, le=100)
    transfer: TransferStageConfig = Field(default_factory=TransferStageConfig, description="X_itr: style transfer actors")

    @field_validator("strategy")
    @classmethod
    def _strategy_fits_generator(cls, strategy: StrategyConfig, info: ValidationInfo) -> StrategyConfig:
        generator = info.data.get("generator")
        kind = generator.kind if generator is not None else None
        if strategy.kind == "counterfactual" and kind not in COUNTERFACTUAL_KINDS:
            raise ValueError(f"kind counterfactual needs datagen.generator.kind {' or '.join(COUNTERFACTUAL_KINDS)}, "
                             f"a generator with separate mechanisms (got {kind})")
        if strategy.kind == "intervention" and kind in COUNTERFACTUAL_KINDS:
            raise ValueError(f"kind intervention edits GANSpace directions, which a {kind} generator has none of: "
                             "use kind observational or counterfactual")
        return strategy

    def directions_path(self, output_dir: Path) -> Path:
        return self.directions.path or Path(output_dir) / "directions.npz"

    def weights_path(self, output_dir: Path) -> str:
        if self.generator.weights is not None:
            return self.generator.weights
        return "biggan-deep-256" if self.generator.kind == "biggan" else str(Path(output_dir) / "generator")
