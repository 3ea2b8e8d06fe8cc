"""Generation as a job stage: check the inputs, plan the work units, run the actor pool.

Everything that can be wrong with the inputs (weights, directions, strategy, classes, actor count)
is checked here in the driver before any actor starts, so bad input ends with one line and
nothing written.
"""

from collections.abc import Callable
from pathlib import Path

import torch

from datagen.actors import ActorSettings
from datagen.config import DatagenConfig
from datagen.directions import load_directions
from datagen.errors import DatagenError
from datagen.generators.loading import load_generator
from datagen.pool import GeneratorPool, PoolEvent, PoolReport
from datagen.strategies import component_ranges
from datagen.units import WorkUnit, plan_units


def plan_generation(
    config: DatagenConfig,
    output_dir: Path,
    store_dir: Path,
    config_hash: str,
    max_samples_per_shard: int,
    max_bytes_per_shard: int,
) -> tuple[ActorSettings, list[WorkUnit]]:
    """Validate the generation inputs and return the actors' settings and every work unit.

    Raises:
        DatagenError: zero actors, missing or mismatched weights or directions, a strategy the
            directions cannot serve, or classes the generator does not have.
    """
    if config.actors < 1:
        raise DatagenError(f"datagen.actors must be >= 1 to generate (got {config.actors})")
    weights = config.weights_path(output_dir)
    generator = load_generator(config.generator.kind, weights, torch.device("cpu"))
    directions_path = config.directions_path(output_dir)
    if config.strategy.kind == "intervention":
        component_ranges(config.strategy, load_directions(directions_path, latent_dim=generator.latent_dim))
    classes = list(range(generator.num_classes)) if config.classes is None else config.classes
    unknown = [index for index in classes if index >= generator.num_classes]
    if unknown:
        raise DatagenError(f"datagen.classes {unknown} are not classes of {generator.generator_id} (it has {generator.num_classes})")
    settings = ActorSettings(
        datagen=config, store_dir=Path(store_dir), weights=weights, directions_path=directions_path,
        config_hash=config_hash, max_samples_per_shard=max_samples_per_shard, max_bytes_per_shard=max_bytes_per_shard,
    )
    return settings, plan_units(classes, config.strategy.seeds_per_class, config.seeds_per_unit)


def planned_samples(config: DatagenConfig, units: list[WorkUnit]) -> int:
    """Images the whole plan produces."""
    return sum(unit.seed_stop - unit.seed_start for unit in units) * config.strategy.images_per_seed


def start_pool(
    settings: ActorSettings,
    units: list[WorkUnit],
    on_event: Callable[[PoolEvent], None] = lambda event: None,
    use_gpu: bool = False,
) -> GeneratorPool:
    """A pool of ``settings.datagen.actors`` generator actors over ``units`` (Ray must be initialised)."""
    return GeneratorPool(settings, units, settings.datagen.actors, on_event=on_event, use_gpu=use_gpu)


def run_generation(settings: ActorSettings, units: list[WorkUnit], on_event=lambda event: None, use_gpu: bool = False) -> PoolReport:
    """Generate every unit not yet in the manifest and return the pool's totals."""
    pool = start_pool(settings, units, on_event, use_gpu)
    try:
        return pool.run()
    finally:
        pool.shutdown()
