"""The generation stages of a job: train the CVAE, compute directions, run the generator pool."""

from collections.abc import Callable
from pathlib import Path

from cluster.config import JobConfig
from cluster.local_ray import cluster_has_gpus
from cluster.progress import progress_bar
from datagen.actors import ActorSettings
from datagen.directions import Directions, compute_directions
from datagen.generators.cvae_training import load_stream_images, train_cvae
from datagen.generators.loading import load_generator, pick_device
from datagen.pool import ActorPool, PoolEvent, PoolReport
from datagen.service import (
    plan_generation,
    planned_samples,
    start_pool,
    start_transfer_pool,
)
from datagen.transfer_stage import content_sample_count
from datagen.units import WorkUnit
from shards.manifest import Manifest


def train_generator(config: JobConfig) -> Path:
    """Train the job's CVAE on its training stream and save it where the actors load it from."""
    generator_config = config.datagen.generator
    images, labels = load_stream_images(config.store_dir / generator_config.train_stream, generator_config.train.model.image_size)
    epochs = generator_config.train.epochs
    with progress_bar("train generator") as update:
        generator, _ = train_cvae(images, labels, generator_config.train, on_progress=lambda epoch, loss: update(epoch + 1, epochs))
    destination = Path(config.datagen.weights_path(config.output_dir))
    generator.save(destination)
    return destination


def compute_job_directions(config: JobConfig) -> tuple[Path, Directions]:
    """GANSpace directions of the job's generator, saved to ``datagen.directions.path`` (resumable)."""
    datagen = config.datagen
    generator = load_generator(datagen.generator.kind, datagen.weights_path(config.output_dir), pick_device(datagen.device), "fp32")
    destination = datagen.directions_path(config.output_dir)
    state = destination.with_name(destination.stem + ".state.npz")
    with progress_bar("directions") as update:
        directions = compute_directions(generator, datagen.directions, state, on_progress=update)
    directions.save(destination)
    state.unlink(missing_ok=True)
    return destination, directions


def _use_gpu(config: JobConfig) -> bool:
    return config.datagen.device == "cuda" or (config.datagen.device == "auto" and cluster_has_gpus())


def plan_job_generation(config: JobConfig, config_hash: str) -> tuple[ActorSettings, list[WorkUnit]]:
    """Check the job's generation inputs (before Ray starts) and plan its work units."""
    return plan_generation(
        config.datagen, config.output_dir, config.store_dir, config_hash,
        config.shards.max_samples_per_shard, config.shards.max_bytes_per_shard,
    )


def _counting(update: Callable[[int, int], None], done: int, total: int, also: Callable[[PoolEvent], None] | None):
    """A pool callback that advances a progress bar by the images of each event (then calls ``also``)."""
    update(done, total)

    def on_event(event: PoolEvent) -> None:
        nonlocal done
        done += event.images
        update(done, total)
        if also is not None:
            also(event)

    return on_event


def generation_pool(config: JobConfig, settings: ActorSettings, units: list[WorkUnit],
                    update: Callable[[int, int], None], also: Callable[[PoolEvent], None] | None = None) -> ActorPool:
    """The job's generator pool, reporting images to ``update`` (run it with ``run_pool``)."""
    progress = Manifest(config.store_dir / config.datagen.stream).unit_progress()
    done = sum(progress[unit.unit_id].samples for unit in units if unit.unit_id in progress)
    on_event = _counting(update, done, planned_samples(config.datagen, units), also)
    return start_pool(settings, units, on_event, use_gpu=_use_gpu(config))


def transfer_pool(config: JobConfig, generation_units: list[WorkUnit], config_hash: str,
                  update: Callable[[int, int], None], also: Callable[[PoolEvent], None] | None = None) -> ActorPool:
    """The job's transfer pool over its content stream (run it with ``run_pool``)."""
    stage = config.datagen.transfer
    on_event = _counting(update, 0, content_sample_count(config.store_dir, stage), also)
    return start_transfer_pool(
        stage, generation_units, config.store_dir, config_hash,
        config.shards.max_samples_per_shard, config.shards.max_bytes_per_shard,
        device=config.datagen.device, resources=config.datagen.actor_resources,
        on_event=on_event, use_gpu=_use_gpu(config),
    )


def run_pool(pool: ActorPool) -> PoolReport:
    """Run a pool to the end of its plan (or its ``stop``) and release its actors."""
    try:
        return pool.run()
    finally:
        pool.shutdown()
