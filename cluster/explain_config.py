"""Settings of ``genint explain`` (seed 004's expected property gradient magnitude and GradCAM),
apart from its code so a job config validates without torch: the job's ``explain:`` section."""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, model_validator

from shards.config import StreamName
from trainers.limits import MAX_BATCH_SIZE, MAX_SEED

MIN_STEPS, MAX_STEPS = 3, 10_000
# Two-sided, the smallest p-value is 2 / (K + 1): below 199 shuffles nothing reaches p < 0.01.
MIN_PERMUTATIONS, MAX_PERMUTATIONS = 199, 1_000_000
MAX_EXPLAINED_IMAGES = 4_096
Colour = tuple[float, float, float]


class ColourSweepConfig(BaseModel):
    """``background_colour`` and ``stroke_colour``: the part's colour moves from ``start`` to ``end``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    start: Colour | Literal["own"] = Field(default="own", description="RGB in [0, 1], or own: the part's colour in each image")
    end: Colour = Field(default=(0.0, 0.0, 0.0), description="RGB in [0, 1] the sweep ends at")

    @model_validator(mode="after")
    def _colours_in_range(self) -> "ColourSweepConfig":
        for name, colour in (("start", self.start), ("end", self.end)):
            if colour != "own" and not all(0.0 <= channel <= 1.0 for channel in colour):
                raise ValueError(f"{name} must be an RGB colour with channels in [0, 1] (got {list(colour)})")
        return self


class GradcamConfig(BaseModel):
    """``genint explain --gradcam``: maps of the labelled class at one layer, and their IoU with digit masks."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    layer: str | None = Field(default=None, description="the module to read, as named_modules names it; None: the last "
                              "conv block (layer4 of a ResNet, features.4 of the small CNN)")
    images: PositiveInt = Field(default=16, le=MAX_EXPLAINED_IMAGES, description="images drawn (seeded) from explain.stream")
    threshold: float = Field(default=0.5, gt=0, lt=1, description="a map's pixels at or above this share of its maximum are 'looked at'")
    stroke_iou: bool = Field(default=False, description="also score the IoU of the thresholded maps with the digits' stroke "
                             "masks (digits benchmarks: light strokes on a uniform background)")
    mask_threshold: float = Field(default=0.5, gt=0, lt=1, description="a pixel is stroke where its stroke coverage exceeds this")


class ExplainConfig(BaseModel):
    """``genint explain``: which images are swept, how, what is recorded and how it is tested."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    stream: StreamName = Field(default="original", description="the stream the base images come from (colour properties, GradCAM)")
    images: PositiveInt = Field(default=32, le=MAX_EXPLAINED_IMAGES, description="base images, drawn with seed")
    steps: int = Field(default=64, ge=MIN_STEPS, le=MAX_STEPS, description="N, evenly spaced settings of the property")
    permutations: int = Field(default=10_000, ge=MIN_PERMUTATIONS, le=MAX_PERMUTATIONS, description="K, shuffles in the test (seed 004: 10,000)")
    level: float = Field(default=0.01, gt=0, lt=1, description="significance level delta, two-sided (seed 004: 0.01)")
    output: Literal["probability", "logit", "cosine"] = Field(
        default="probability", description="what each step records: the label's softmax probability or logit, or the cosine "
        "similarity of the penultimate features to the first step's")
    accuracy: Literal[2, 4, 6] = Field(default=2, description="accuracy order of the finite differences (Fornberg weights)")
    seed: NonNegativeInt = Field(default=0, le=MAX_SEED, description="fixes the base images, the latents and the shuffles")
    colours: ColourSweepConfig = Field(default_factory=ColourSweepConfig)
    direction_stdevs: PositiveFloat = Field(default=3.0, le=1_000.0, description="direction:<k> sweeps the latent coordinate "
                                            "along direction k from -r to r, r this many of its stdevs")
    truncation: float = Field(default=1.0, gt=0, le=4.0, description="direction:<k>: the truncation of the base latents")
    batch_size: PositiveInt = Field(default=256, le=MAX_BATCH_SIZE, description="images per forward pass")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="where the model (and generator) run")
    gradcam: GradcamConfig = Field(default_factory=GradcamConfig)
    output_dir: Path | None = Field(default=None, description="where results go (default OUTPUT_DIR/explain)")

    @model_validator(mode="after")
    def _enough_steps(self) -> "ExplainConfig":
        if self.steps < self.accuracy + 1:
            raise ValueError(f"steps must be >= accuracy + 1 = {self.accuracy + 1} for accuracy {self.accuracy} (got {self.steps})")
        return self
