"""Intervention strategies: which latent edits each generated image gets (the paper's t, k, s).

A strategy expands one (class, seed) into ``images_per_seed`` sample specs. Everything random
about a spec comes from a generator seeded by (job seed, class, seed index), so a work unit's
sample i is the same whichever actor makes it and however often it is remade.
"""

import json
from dataclasses import dataclass, field, replace
from importlib import resources

import numpy as np
import torch

from datagen.directions import Directions
from datagen.errors import DatagenError
from datagen.strategy_config import PairsConfig, StrategyConfig

# The reference ranges were hand-tuned for this generator's top 60 directions.
REFERENCE_RANGES_GENERATOR = "biggan-deep-256"
# The partners' draws come from their own random stream, so adding pairs leaves every sample as it was.
PAIRS_STREAM = 2


@dataclass(frozen=True)
class SampleSpec:
    """What one generated image is: its class, latent seed and the edits applied to that latent."""

    class_index: int
    seed_index: int
    slot: int
    latent_seed: int
    components: tuple[int, ...] = ()
    offsets: tuple[float, ...] = ()
    # A counterfactual's (shape, texture, background) classes and noise seeds; empty for other strategies.
    mechanism_classes: tuple[int, ...] = ()
    mechanism_seeds: tuple[int, ...] = ()
    # A pair's partner: its class and latent seed (the sample's own for other_class pairs); None without pairs.
    partner_class: int | None = None
    partner_latent_seed: int | None = None

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
    if strategy.kind != "intervention":
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


def counterfactual_specs(strategy: StrategyConfig, num_classes: int, job_seed: int, class_index: int, seed_index: int) -> list[SampleSpec]:
    """The counterfactuals of one shape (class, seed): a deterministic function of its arguments only.

    The shape's noise seed is drawn as every strategy's latent seed is; each of the
    ``counterfactuals_per_shape`` images then draws its texture and background class uniformly over
    the generator's ``num_classes`` and a noise seed for each. The label is the shape's class.
    """
    rng = np.random.default_rng([job_seed, class_index, seed_index])
    shape_seed = int(rng.integers(2**32))
    specs = []
    for slot in range(strategy.counterfactuals_per_shape):
        texture_class, background_class = (int(value) for value in rng.integers(num_classes, size=2))
        texture_seed, background_seed = (int(value) for value in rng.integers(2**32, size=2))
        specs.append(SampleSpec(class_index, seed_index, slot, shape_seed,
                                mechanism_classes=(class_index, texture_class, background_class),
                                mechanism_seeds=(shape_seed, texture_seed, background_seed)))
    return specs


def with_partners(specs: list[SampleSpec], pairs: PairsConfig, num_classes: int, job_seed: int) -> list[SampleSpec]:
    """``specs`` with their counterfactual partners: a class other than the sample's, drawn uniformly, and for
    ``random`` pairs an unrelated latent seed. A deterministic function of each spec and the job seed only."""
    if num_classes < 2:
        raise DatagenError(f"strategy pairs need a generator of at least 2 classes (it has {num_classes})")
    paired = []
    for spec in specs:
        rng = np.random.default_rng([job_seed, spec.class_index, spec.seed_index, spec.slot, PAIRS_STREAM])
        partner_class = (spec.class_index + 1 + int(rng.integers(num_classes - 1))) % num_classes
        latent_seed = int(rng.integers(2**32)) if pairs.partner == "random" else spec.latent_seed
        paired.append(replace(spec, partner_class=partner_class, partner_latent_seed=latent_seed))
    return paired


def intervene(latents: torch.Tensor, directions: torch.Tensor, offsets: torch.Tensor, latent_mean: torch.Tensor) -> torch.Tensor:
    """Set each latent's coordinate along its unit direction to the offset: z - ((z - mean) . u) u + offset u.

    Args:
        latents: (N, d). directions: (N, d) unit rows, one per latent. offsets: (N,). latent_mean: (d,).

    Returns:
        The edited latents; the part of each latent orthogonal to its direction is unchanged.
    """
    coordinate = ((latents - latent_mean) * directions).sum(dim=1, keepdim=True)
    return latents + (offsets.unsqueeze(1) - coordinate) * directions
