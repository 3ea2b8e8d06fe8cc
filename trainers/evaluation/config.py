"""Configuration of evaluation: batching and the ObjectNet protocol; transforms come from the loader."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

from trainers.data.config import LoaderConfig
from trainers.limits import MAX_BATCH_SIZE, MAX_IMAGE_SIZE_PX


class EvalConfig(BaseModel):
    """How images are read and scored.

    ``loader`` gives the eval transform (resize the shorter side to ``resize_size``, centre crop
    ``crop_size``, normalise with ``mean``/``std``) and DALI's threads: pass the training job's
    loader config so the model sees the normalisation it was trained with.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    loader: LoaderConfig = Field(default_factory=LoaderConfig)
    batch_size: PositiveInt = Field(default=64, le=MAX_BATCH_SIZE)
    objectnet_border_px: NonNegativeInt = Field(
        default=2, le=MAX_IMAGE_SIZE_PX, description="pixels cut from each side of ObjectNet images (their 1-px red border) before resizing"
    )
    objectnet_unmapped: Literal["error", "skip"] = Field(
        default="error", description="a folder outside the 113 ImageNet-overlapping classes: fail, or leave it out"
    )
