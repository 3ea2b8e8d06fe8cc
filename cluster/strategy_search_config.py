"""The ``strategy_search`` section of a job: how ``genint strategy score | search`` estimate the causal
bound log P(x | z) (datagen/causal_bound.py) and which strategies the search compares, and the
checks of that section against the job's ``datagen.strategy``.

Torch-free, so a job config (and a search's grid) is checked without loading torch.
"""

import itertools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)

from cluster.errors import ConfigError
from datagen.limits import MAX_DIMENSIONS, MAX_SAMPLES
from datagen.strategy_config import StrategyConfig
from shards.config import StreamName
from trainers.config import Architecture
from trainers.limits import MAX_BATCH_SIZE, MAX_CLASSES

if TYPE_CHECKING:  # cluster.config imports this module for its field
    from cluster.config import JobConfig

# Each strategy generates samples_per_class images per class and runs them through the extractor.
MAX_GRID_STRATEGIES = 1000
GRID_AXES = ("truncation", "top_k", "scale", "offset_range")


class FeatureExtractorConfig(BaseModel):
    """The classifier whose penultimate-layer features compare real and generated images."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    arch: Architecture = Field(default="resnet18", description="the paper uses a ResNet-18; for digits, small_cnn")
    weights: str = Field(
        min_length=1,
        description="a genint checkpoint directory (e.g. a classifier trained on the original stream), "
        "a state_dict file, or torchvision weights by name (IMAGENET1K_V1)",
    )
    num_classes: PositiveInt | None = Field(default=None, le=MAX_CLASSES, description="outputs it was trained with; default train.num_classes")


class StrategyGrid(BaseModel):
    """The strategies a search compares: every combination of the listed values, each applied over
    ``datagen.strategy`` (an axis not listed keeps that strategy's value)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    truncation: list[Annotated[float, Field(gt=0, le=1)]] | None = Field(default=None, max_length=MAX_GRID_STRATEGIES)
    top_k: list[Annotated[int, Field(ge=1, le=MAX_DIMENSIONS)]] | None = Field(default=None, max_length=MAX_GRID_STRATEGIES)
    scale: list[NonNegativeFloat] | None = Field(default=None, max_length=MAX_GRID_STRATEGIES)
    offset_range: list[tuple[float, float]] | None = Field(
        default=None, max_length=MAX_GRID_STRATEGIES, description="fixed offset intervals, instead of scale"
    )

    def listed(self) -> dict[str, list]:
        """The axes given, in GRID_AXES order, with their values."""
        return {axis: values for axis in GRID_AXES if (values := getattr(self, axis)) is not None}

    @model_validator(mode="after")
    def _a_grid(self) -> "StrategyGrid":
        listed = self.listed()
        if not listed:
            raise ValueError(f"lists no values: give at least one of {', '.join(GRID_AXES)}")
        if "scale" in listed and "offset_range" in listed:
            raise ValueError("give scale or offset_range, not both (scale multiplies the ranges an offset is drawn from)")
        for axis, values in listed.items():
            if not values:
                raise ValueError(f"{axis} lists no values (got []); list one or more, or leave {axis} out")
            if len(set(values)) != len(values):
                raise ValueError(f"{axis} lists a value twice (got {values})")
        for low, high in self.offset_range or ():
            if low > high:
                raise ValueError(f"offset_range must list [low, high] intervals (got [{low}, {high}])")
        size = math.prod(len(values) for values in listed.values())
        if size > MAX_GRID_STRATEGIES:
            raise ValueError(f"has {size} strategies, more than {MAX_GRID_STRATEGIES}; list fewer values")
        return self

    def points(self) -> list[dict]:
        """Every combination of the listed values, as strategy fields, in the order listed."""
        listed = self.listed()
        return [dict(zip(listed, combination)) for combination in itertools.product(*listed.values())]


class StrategySearchConfig(BaseModel):
    """How the causal bound is estimated, and the grid ``genint strategy search`` sweeps."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    real_stream: StreamName = Field(
        default="validation",
        description="held-out real images x_i, a committed stream of the job's store; a split drawn like the "
        "test but not the test, since the chosen strategy is a setting chosen by a score",
    )
    real_per_class: PositiveInt | None = Field(default=None, le=MAX_SAMPLES, description="real images used per class (first in commit order); default all")
    samples_per_class: PositiveInt = Field(
        default=500, le=MAX_SAMPLES, description="images x'_j generated per class and strategy (the paper: 500); the same for every strategy"
    )
    feature_extractor: FeatureExtractorConfig
    temperature: PositiveFloat = Field(default=1.0, description="features are divided by it before the softmax (the authors: 1)")
    estimate: Literal["nearest", "sum"] = Field(
        default="nearest", description="log sum_j P(x_i | x'_j) by its largest term (the paper) or exactly"
    )
    same_class: bool = Field(default=True, description="compare a real image with the images generated for its class only (the authors)")
    grid: StrategyGrid | None = Field(default=None, description="the strategies `genint strategy search` compares")
    batch_size: PositiveInt = Field(default=64, le=MAX_BATCH_SIZE, description="images per generator and extractor forward pass")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    output_dir: Path | None = Field(default=None, description="where search writes its table, figure and chosen strategy; default OUTPUT/strategy-search")

    def search_dir(self, job_output_dir: Path) -> Path:
        return self.output_dir or Path(job_output_dir) / "strategy-search"


def search_settings(job: "JobConfig") -> StrategySearchConfig:
    """The job's ``strategy_search`` section.

    Raises:
        ConfigError: the section is not set.
    """
    if job.strategy_search is None:
        raise ConfigError("strategy_search is not set: the causal bound needs at least strategy_search.real_stream "
                          "(held-out real images) and strategy_search.feature_extractor (arch and weights)")
    return job.strategy_search


def grid_strategies(base: StrategyConfig, grid: StrategyGrid | None, grid_path: str = "strategy_search.grid",
                    base_path: str = "datagen.strategy") -> list[StrategyConfig]:
    """The strategies of ``grid``, each ``base`` with the grid point's fields.

    Args:
        grid_path, base_path: where the grid and the base strategy are in the config, for messages.

    Raises:
        ConfigError: no grid, a grid that varies what an observational strategy does not have, or a
            point that is no valid strategy (naming the point).
    """
    if grid is None:
        raise ConfigError(f"{grid_path} is not set: search needs the strategies to compare "
                          "(lists of truncation, top_k, scale or offset_range)")
    if base.kind == "observational":
        varied = [axis for axis in grid.listed() if axis != "truncation"]
        if varied:
            raise ConfigError(f"{grid_path} varies {', '.join(varied)}, but {base_path} is observational "
                              f"(only truncation applies); make {base_path} an intervention")
    strategies = []
    for point in grid.points():
        try:
            strategies.append(StrategyConfig.model_validate({**base.model_dump(), "preset": None, **point}))
        except ValidationError as error:
            problem = error.errors()[0]["msg"].removeprefix("Value error, ")
            described = ", ".join(f"{axis}={value}" for axis, value in point.items())
            raise ConfigError(f"{grid_path}: the strategy {described} over {base_path} is invalid: {problem}") from None
    return strategies
