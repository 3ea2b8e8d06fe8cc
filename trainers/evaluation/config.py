"""Configuration of evaluation: the eval transform, batching and the ObjectNet protocol."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, model_validator


class EvalConfig(BaseModel):
    """How images are read and transformed for scoring (resize, centre crop, normalise)."""

    model_config = ConfigDict(extra="forbid")

    resize_size: PositiveInt = Field(default=256, description="shorter side after resizing, in pixels")
    crop_size: PositiveInt = Field(default=224, description="side of the centre crop, in pixels")
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[PositiveFloat, PositiveFloat, PositiveFloat] = (0.229, 0.224, 0.225)
    batch_size: PositiveInt = 64
    num_threads: PositiveInt = Field(default=2, description="DALI CPU threads")
    objectnet_border_px: NonNegativeInt = Field(
        default=2, description="pixels cut from each side of ObjectNet images (their 1-px red border) before resizing"
    )
    objectnet_unmapped: Literal["error", "skip"] = Field(
        default="error", description="a folder outside the 113 ImageNet-overlapping classes: fail, or leave it out"
    )

    @model_validator(mode="after")
    def _crop_fits(self) -> "EvalConfig":
        if self.crop_size > self.resize_size:
            raise ValueError(f"crop_size must be <= resize_size (got {self.crop_size} > {self.resize_size})")
        return self
