"""Configuration of the transfer stage: Gatys style transfer of interventions onto natural images (X_itr),
and the actor pool that runs it. Torch-free, so a job config validates without loading VGG.

Defaults follow the GenInt paper and its reference code. The paper's supplement names the layers
by count ("features at 1st, 2nd, 3rd, 4th, 5th convolutional layer as the style ... 4th
convolutional layer as content"), and the reference code counts every conv of ``vgg19().features``,
so "conv4" is the fourth convolution, conv2_2, not Gatys' conv4_2. Gatys' own choice is one line away:
``style_layers=[conv1_1, conv2_1, conv3_1, conv4_1, conv5_1], content_layers=[conv4_2]``.
"""

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from datagen.limits import (
    MAX_ACTORS,
    MAX_BATCH_SIZE,
    MAX_IMAGE_SIZE_PX,
    MAX_ITERATIONS,
    MAX_SAMPLES,
    MAX_SEED,
    MAX_TIMEOUT_S,
)
from shards.config import StreamName

# The convolutions of torchvision's vgg19().features, block by block (datagen/transfer/vgg.py
# checks this list against the network when it loads).
VGG19_CONV_NAMES = ("conv1_1", "conv1_2", "conv2_1", "conv2_2",
                    "conv3_1", "conv3_2", "conv3_3", "conv3_4",
                    "conv4_1", "conv4_2", "conv4_3", "conv4_4",
                    "conv5_1", "conv5_2", "conv5_3", "conv5_4")
ConvName = Literal[VGG19_CONV_NAMES]  # type: ignore[valid-type]


class TransferConfig(BaseModel):
    """How natural images (content) take on the look of interventional images (style)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    vgg_weights: str = Field(
        default="IMAGENET1K_V1",
        description="a torchvision VGG19_Weights name (downloads) or a path to a state_dict of vgg19() or vgg19().features",
    )
    style_layers: list[ConvName] = Field(
        default=["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"], min_length=1
    )
    content_layers: list[ConvName] = Field(default=["conv2_2"], min_length=1)
    style_weight: PositiveFloat = 1e6
    content_weight: NonNegativeFloat = 0.1
    lr: PositiveFloat = 1.0
    max_iter: PositiveInt = Field(
        default=10,
        le=MAX_ITERATIONS,
        description="L-BFGS iterations per optimizer.step call in the one-image reference loop; the batched "
        "optimiser carries its history across calls, so its iterates do not depend on this",
    )
    history_size: PositiveInt = Field(default=100, le=MAX_ITERATIONS)
    min_steps: PositiveInt = Field(default=20, le=MAX_ITERATIONS)
    max_steps: PositiveInt = Field(default=70, le=MAX_ITERATIONS)
    seed: NonNegativeInt = Field(default=0, le=MAX_SEED, description="with the pair's keys, fixes each pair's step count")
    optimise_size: PositiveInt = Field(default=512, le=MAX_IMAGE_SIZE_PX, description="square side (px) the images are optimised at")
    save_size: PositiveInt = Field(default=256, le=MAX_IMAGE_SIZE_PX, description="square side (px) of the written image")
    batch_size: PositiveInt = Field(default=8, le=MAX_BATCH_SIZE, description="pairs optimised together in one L-BFGS problem")
    image_format: Literal["jpg", "png"] = "jpg"
    jpeg_quality: int = Field(default=95, ge=1, le=100)

    @model_validator(mode="after")
    def _steps_ordered(self) -> "TransferConfig":
        if self.min_steps > self.max_steps:
            raise ValueError(f"min_steps ({self.min_steps}) must be <= max_steps ({self.max_steps})")
        return self


class TransferStageConfig(BaseModel):
    """The transfer actor pool and what it reads and writes."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    actors: NonNegativeInt = Field(default=0, le=MAX_ACTORS, description="transfer actors; 0 turns transfer off")
    content_stream: StreamName = "original"
    style_stream: StreamName = "interventional"
    stream: StreamName = "transferred"
    samples_per_unit: PositiveInt = Field(default=16, le=MAX_SAMPLES)
    max_samples: PositiveInt | None = Field(default=None, le=MAX_SAMPLES, description="transfer only the first N content samples")
    style_pool_units: PositiveInt = Field(default=4, le=MAX_SAMPLES, description="generation units whose images form the style pool")
    style_wait_timeout_s: PositiveFloat = Field(default=3600.0, le=MAX_TIMEOUT_S)
    gatys: TransferConfig = Field(default_factory=TransferConfig)
