"""Intervention strategies: which latent edits each generated image gets (the paper's t, k, s).

A strategy expands one (class, seed) into ``images_per_seed`` sample specs. Everything random
about a spec comes from a generator seeded by (job seed, class, seed index), so a work unit's
sample i is the same whichever actor makes it and however often it is remade.
"""

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Literal

import numpy as np
import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveInt,
    model_validator,
)

from datagen.directions import Directions
from datagen.errors import DatagenError
from datagen.limits import MAX_DIMENSIONS, MAX_SAMPLES

# The reference ranges were hand-tuned for this generator's top 60 directions.
REFERENCE_RANGES_GENERATOR = "biggan-deep-256"

PRESETS: dict[str, dict] = {
    # The paper's chosen strategy (tightest causal bound), at the reference code's volume.
    "paper": dict(kind="intervention", truncation=1.0, top_k=60, scale=1.0, components_per_seed=5, offsets_per_component=1, seeds_per_class=1000),
    # Fig. 5 strength presets (truncation 0.5, 2000 images per class).
    "none": dict(kind="observational", truncation=0.5, seeds_per_class=2000),
    "weak": dict(kind="intervention", truncation=0.5, top_k=20, components_per_seed=4, offsets_per_component=10, offset_range=(-5.0, 5.0), seeds_per_class=50),
    "medium": dict(kind="intervention", truncation=0.5, top_k=20, components_per_seed=2, offsets_per_component=2, offset_range=(-7.0, 7.0), seeds_per_class=500),
    "strong": dict(kind="intervention", truncation=0.5, top_k=20, components_per_seed=2, offsets_per_component=1, offset_range=(-9.0, 9.0), seeds_per_class=1000),
    # The "GAN augmentation" baseline: plain sampling at truncation 0.2.
    "gan-augmentation": dict(kind="observational", truncation=0.2, seeds_per_class=2000),
}


class StrategyConfig(BaseModel):
    """A strategy: a preset name, optionally with fields overridden, or every field spelled out."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    preset: Literal["paper", "none", "weak", "medium", "strong", "gan-augmentation"] | None = None
    kind: Literal["intervention", "observational"] = "intervention"
    truncation: float = Field(default=1.0, gt=0, le=1, description="t: scales the latents and picks BigGAN's batch-norm statistics")
    top_k: PositiveInt = Field(default=60, le=MAX_DIMENSIONS, description="k: components are chosen among the top k")
    scale: NonNegativeFloat = Field(default=1.0, description="s: offsets are drawn within s x each component's range")
    components_per_seed: PositiveInt = Field(default=5, le=MAX_DIMENSIONS, description="components chosen per seed; one image each")
    offsets_per_component: PositiveInt = Field(default=1, le=MAX_DIMENSIONS)
    offset_range: tuple[float, float] | None = Field(default=None, description="fixed offset interval instead of per-component ranges")
    ranges: Literal["auto", "reference", "spread"] = Field(
        default="auto", description="per-component ranges: the reference code's (BigGAN-deep-256) or from the latents' spread"
    )
    spread_factor: NonNegativeFloat = Field(default=3.0, description="spread ranges are +- this many stdevs along the direction")
    seeds_per_class: PositiveInt = Field(default=1000, le=MAX_SAMPLES)

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, raw):
        if isinstance(raw, str):
            raw = {"preset": raw}
        if isinstance(raw, dict) and raw.get("preset") in PRESETS:
            raw = {**PRESETS[raw["preset"]], **raw}
        return raw

    @model_validator(mode="after")
    def _components_fit(self) -> "StrategyConfig":
        if self.kind == "intervention" and self.components_per_seed > self.top_k:
            raise ValueError(f"components_per_seed must be <= top_k (got {self.components_per_seed} > {self.top_k})")
        if self.offset_range is not None and self.offset_range[0] > self.offset_range[1]:
            raise ValueError(f"offset_range must be [low, high] (got {list(self.offset_range)})")
        return self

    @property
    def images_per_seed(self) -> int:
        return 1 if self.kind == "observational" else self.components_per_seed * self.offsets_per_component


@dataclass(frozen=True)
class SampleSpec:
    """What one generated image is: its class, latent seed and the edits applied to that latent."""

    class_index: int
    seed_index: int
    slot: int
    latent_seed: int
    components: tuple[int, ...] = ()
    offsets: tuple[float, ...] = ()

    @property
    def key(self) -> str:
        return f"c{self.class_index}-s{self.seed_index}-i{self.slot}"


@dataclass
class ComponentRanges:
    """The (low, high) offset interval of each of the top components, before scaling by s."""

    low: np.ndarray
    high: np.ndarray
    source: str = field(default="")


def reference_ranges() -> ComponentRanges:
    """The GenInt reference code's ranges for BigGAN-deep-256's top 60 directions (as coded)."""
    text = resources.files("datagen").joinpath("data/genint_component_ranges.json").read_text()
    components = json.loads(text)["components"]
    bounds = np.array([components[str(index)]["range_as_coded"] for index in range(len(components))], dtype=np.float64)
    return ComponentRanges(bounds[:, 0], bounds[:, 1], "reference")


def component_ranges(strategy: StrategyConfig, directions: Directions | None) -> ComponentRanges | None:
    """The ranges a strategy draws offsets from, or None when it needs none.

    Raises:
        DatagenError: an intervention without directions, or more components than ranges exist for.
    """
    if strategy.kind == "observational":
        return None
    if directions is None:
        raise DatagenError("strategy intervenes but no directions are loaded; set datagen.directions.path or run `genint directions`")
    available = directions.lat_comp.shape[0]
    if strategy.top_k > available:
        raise DatagenError(f"strategy top_k={strategy.top_k} but the directions file has {available} components")
    if strategy.offset_range is not None:
        return ComponentRanges(np.full(available, strategy.offset_range[0]), np.full(available, strategy.offset_range[1]), "fixed")
    use_reference = strategy.ranges == "reference" or (
        strategy.ranges == "auto" and directions.generator_id == REFERENCE_RANGES_GENERATOR
    )
    if use_reference:
        ranges = reference_ranges()
        if strategy.top_k > len(ranges.low):
            raise DatagenError(f"strategy top_k={strategy.top_k} but reference ranges exist for the top {len(ranges.low)} components only")
        return ranges
    spread = strategy.spread_factor * directions.lat_stdev
    return ComponentRanges(-spread, spread, "spread")


def seed_specs(strategy: StrategyConfig, ranges: ComponentRanges | None, job_seed: int, class_index: int, seed_index: int) -> list[SampleSpec]:
    """The images of one (class, seed): a deterministic function of its arguments only."""
    rng = np.random.default_rng([job_seed, class_index, seed_index])
    latent_seed = int(rng.integers(2**32))
    if strategy.kind == "observational":
        return [SampleSpec(class_index, seed_index, 0, latent_seed)]
    components = rng.choice(strategy.top_k, size=strategy.components_per_seed, replace=False)
    specs = []
    for component in components:
        low, high = strategy.scale * ranges.low[component], strategy.scale * ranges.high[component]
        for offset in rng.uniform(low, high, size=strategy.offsets_per_component):
            specs.append(SampleSpec(class_index, seed_index, len(specs), latent_seed, (int(component),), (float(offset),)))
    return specs


def intervene(latents: torch.Tensor, directions: torch.Tensor, offsets: torch.Tensor, latent_mean: torch.Tensor) -> torch.Tensor:
    """Set each latent's coordinate along its unit direction to the offset: z - ((z - mean) . u) u + offset u.

    Args:
        latents: (N, d). directions: (N, d) unit rows, one per latent. offsets: (N,). latent_mean: (d,).

    Returns:
        The edited latents; the part of each latent orthogonal to its direction is unchanged.
    """
    coordinate = ((latents - latent_mean) * directions).sum(dim=1, keepdim=True)
    return latents + (offsets.unsqueeze(1) - coordinate) * directions
