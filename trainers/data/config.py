"""Configuration of the loaders that turn shard streams into training batches."""

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from trainers.limits import (
    MAX_ANGLE_DEG,
    MAX_IMAGE_SIZE_PX,
    MAX_PREFETCH_BATCHES,
    MAX_SHUFFLE_BUFFER,
    MAX_THREADS,
    MAX_TIMEOUT_S,
)


class LoaderConfig(BaseModel):
    """How every stream is decoded, augmented and fed (per stream choices live in StreamConfig)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    crop_size: PositiveInt = Field(default=224, le=MAX_IMAGE_SIZE_PX, description="side of the square training crop, px")
    resize_size: PositiveInt = Field(default=256, le=MAX_IMAGE_SIZE_PX, description="evaluation: shorter side before the centre crop, px")
    mean: tuple[float, float, float] = Field(
        default=(0.485, 0.456, 0.406), description="per-channel mean of [0, 1] pixels (ImageNet)"
    )
    std: tuple[PositiveFloat, PositiveFloat, PositiveFloat] = Field(
        default=(0.229, 0.224, 0.225), description="per-channel std of [0, 1] pixels (ImageNet)"
    )
    crop_area: tuple[PositiveFloat, PositiveFloat] = Field(
        default=(0.08, 1.0), description="random-resized crop: range of the crop's share of the image area"
    )
    rotate_max_deg: NonNegativeFloat = Field(
        default=15.0, le=MAX_ANGLE_DEG, description="'additional' augmentation: rotation angle drawn from [-x, x] degrees"
    )
    jitter: NonNegativeFloat = Field(
        default=0.4, le=1.0, description="'additional' augmentation: brightness/contrast/saturation factor drawn from [1-x, 1+x]"
    )
    hue_max_deg: NonNegativeFloat = Field(
        default=18.0, le=MAX_ANGLE_DEG, description="'additional' augmentation: hue shift drawn from [-x, x] degrees"
    )
    num_threads: PositiveInt = Field(default=4, le=MAX_THREADS, description="DALI CPU worker threads per pipeline")
    prefetch_queue_depth: PositiveInt = Field(default=2, le=MAX_PREFETCH_BATCHES, description="batches prepared ahead of the step: DALI's prefetch queue for a static stream, batches drawn and decoding ahead for a growing one")
    shuffle_buffer: PositiveInt = Field(
        default=1024, le=MAX_SHUFFLE_BUFFER, description="samples in the reader's shuffle buffer (DALI initial_fill)"
    )
    on_bad_sample: Literal["skip", "fail"] = Field(
        default="skip", description="an undecodable image or truncated shard: skip and count it, or raise TrainError"
    )
    poll_interval_s: PositiveFloat = Field(
        default=1.0, le=MAX_TIMEOUT_S, description="growing streams: how often the manifest is polled while waiting"
    )

    @model_validator(mode="after")
    def _sizes_are_consistent(self) -> "LoaderConfig":
        if self.resize_size < self.crop_size:
            raise ValueError(f"resize_size must be >= crop_size (got {self.resize_size} < {self.crop_size})")
        low, high = self.crop_area
        if not low <= high <= 1.0:
            raise ValueError(f"crop_area must satisfy low <= high <= 1 (got {self.crop_area})")
        return self
