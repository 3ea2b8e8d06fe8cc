"""What an evaluation returns: per-subset accuracies, totals and the paper's reference numbers."""

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt


class SubsetResult(BaseModel):
    """Accuracy of one set (a folder tree, a shard stream, or one ImageNet-C corruption/severity)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    samples: NonNegativeInt
    top1: float = Field(ge=0.0, le=1.0, description="fraction of images with a top-1 hit")
    top5: float = Field(ge=0.0, le=1.0, description="fraction of images with a top-5 hit")


class Reference(BaseModel):
    """A number the GenInt paper reports for this suite."""

    model_config = ConfigDict(extra="forbid")

    model: str
    metric: str
    value: float


class EvalResult(BaseModel):
    """The outcome of one suite on one data directory."""

    model_config = ConfigDict(extra="forbid")

    suite: str
    data_dir: str
    samples: NonNegativeInt
    top1: float = Field(ge=0.0, le=1.0, description="over all samples of all subsets")
    top5: float = Field(ge=0.0, le=1.0, description="over all samples of all subsets")
    subsets: list[SubsetResult]
    corruption_errors_percent: dict[str, float] = Field(
        default_factory=dict, description="ImageNet-C: AlexNet-normalised CE per corruption"
    )
    mce_percent: float | None = Field(default=None, description="ImageNet-C: mean CE over corruptions")
    skipped_folders: list[str] = Field(default_factory=list, description="ObjectNet folders left out as unmapped")
    references: list[Reference] = Field(default_factory=list)
