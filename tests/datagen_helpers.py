"""Tiny generators for datagen tests: a random BigGAN of reduced width saved to disk, with directions;
the store they write to, and a look inside a running actor pool."""

from pathlib import Path

import torch

from datagen.config import DatagenConfig
from datagen.pool import ActorPool
from datagen.directions import DirectionsConfig, compute_directions
from datagen.generators.biggan import (
    BigGANGenerator,
    load_biggan,
    random_biggan,
    tiny_biggan_config,
)
from shards.config import StoreRef
from shards.locations import stream_location


def save_tiny_biggan(root: Path, num_classes: int = 3, image_size: int = 16) -> tuple[Path, Path]:
    """Write random tiny BigGAN weights and their directions under ``root``; return both paths."""
    weights, directions = root / "weights", root / "directions.npz"
    if not weights.exists():
        generator = BigGANGenerator(random_biggan(tiny_biggan_config(num_classes, image_size)), "tiny", torch.device("cpu"))
        generator.save(weights)
        config = DirectionsConfig(samples=64, components=4, batch_size=32, regression_samples=64)
        compute_directions(load_biggan(str(weights), torch.device("cpu")), config, root / "state.npz").save(directions)
    return weights, directions


def tiny_datagen_config(weights: Path, directions: Path, **overrides) -> DatagenConfig:
    """Two components per seed over the top 4 directions, 2 seeds per unit, small batches."""
    settings = dict(
        actors=1,
        device="cpu",
        generator={"weights": str(weights)},
        directions={"path": str(directions), "samples": 64, "components": 4, "batch_size": 32},
        strategy={"kind": "intervention", "truncation": 0.5, "top_k": 4, "components_per_seed": 2, "seeds_per_class": 4},
        seeds_per_unit=2,
        batch_size=4,
    )
    settings.update(overrides)
    return DatagenConfig.model_validate(settings)


def tiny_store(root: "Path | str", max_samples_per_shard: int, max_bytes_per_shard: int = 10**9) -> StoreRef:
    """A store at ``root`` (a directory or an ``s3://`` prefix) rolling shards after
    ``max_samples_per_shard`` samples, config hash ``hash``."""
    return StoreRef(stream_location(root), max_samples_per_shard, max_bytes_per_shard, "hash")


def actor_handles(pool: ActorPool) -> dict:
    """The pool's actors by writer id, so a test can kill or ping one (the pool itself never hands them out)."""
    with pool._lock:
        return {slot.writer_id: slot.handle for slot in pool._slots.values()}
