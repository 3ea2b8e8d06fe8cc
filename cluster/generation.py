"""The generation stages of a job: train the CVAE or CGN, compute directions, run the datagen pools.

``run_datagen_stages`` is the one sequence of the pools (generation, then transfer) that
``genint datagen`` and the job's controller both run, each showing progress its own way.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cluster.config import JobConfig
from cluster.local_ray import cluster_has_gpus
from cluster.progress import progress_bar
from datagen.actors import ActorSettings
from datagen.directions import Directions, compute_directions
from datagen.generators.loading import load_generator, pick_device
from datagen.generators.saved import INCOMPLETE_TRAINING, write_training_record
from datagen.generators.training import train_from_stream, training_epochs, training_fingerprint
from datagen.pool import ActorPool, PoolEvent, PoolReport
from datagen.service import (
    plan_generation,
    planned_samples,
    start_pool,
    start_transfer_pool,
)
from datagen.transfer_stage import content_sample_count
from datagen.units import WorkUnit
from shards.config import StoreRef
from shards.stores import open_manifest

ProgressUpdate = Callable[[int, int], None]  # update(done, total) of a progress bar
PoolCallback = Callable[[PoolEvent], None]


def job_training_fingerprint(config: JobConfig) -> str:
    """The fingerprint of the job's generator training: its settings and its training stream's shards."""
    generator_config = config.datagen.generator
    shards = open_manifest(config.store_dir / generator_config.train_stream).shards()
    return training_fingerprint(generator_config, [(record.name, record.sha256) for record in shards])


def train_generator(config: JobConfig) -> Path:
    """Train the job's CVAE or CGN on its training stream and save it where the actors load it from,
    with the fingerprint of its training beside it."""
    generator_config = config.datagen.generator
    epochs = training_epochs(generator_config)
    fingerprint = job_training_fingerprint(config)
    with progress_bar("train generator") as update:
        generator = train_from_stream(generator_config, config.store_dir / generator_config.train_stream,
                                      on_progress=lambda epoch, loss: update(epoch + 1, epochs))
    destination = Path(config.datagen.weights_path(config.local_output_dir))
    if destination.exists():
        # A crash while the files are replaced must not leave the old fingerprint beside new weights.
        write_training_record(destination, INCOMPLETE_TRAINING)
    generator.save(destination)
    write_training_record(destination, fingerprint)
    return destination


def compute_job_directions(config: JobConfig) -> tuple[Path, Directions]:
    """GANSpace directions of the job's generator, saved to ``datagen.directions.path`` (resumable)."""
    datagen = config.datagen
    generator = load_generator(datagen.generator.kind, datagen.weights_path(config.local_output_dir), pick_device(datagen.device), "fp32")
    destination = datagen.directions_path(config.local_output_dir)
    state = destination.with_name(destination.stem + ".state.npz")
    with progress_bar("directions") as update:
        directions = compute_directions(generator, datagen.directions, state, on_progress=update)
    directions.save(destination)
    state.unlink(missing_ok=True)
    return destination, directions


def _use_gpu(config: JobConfig) -> bool:
    return config.datagen.device == "cuda" or (config.datagen.device == "auto" and cluster_has_gpus())


def job_store(config: JobConfig, config_hash: str) -> StoreRef:
    """The store the job's datagen writers write to: its ``shards`` settings at the job's store directory."""
    return StoreRef.of(config.shards, config.store_dir, config_hash)


def plan_job_generation(config: JobConfig, config_hash: str) -> tuple[ActorSettings, list[WorkUnit]]:
    """Check the job's generation inputs (before Ray starts) and plan its work units."""
    return plan_generation(config.datagen, config.local_output_dir, job_store(config, config_hash))


def _counting(update: ProgressUpdate, done: int, total: int, also: PoolCallback | None) -> PoolCallback:
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
                    update: ProgressUpdate, also: PoolCallback | None = None) -> ActorPool:
    """The job's generator pool, reporting images to ``update`` (run it with ``run_pool``)."""
    progress = open_manifest(config.store_dir / config.datagen.stream).unit_progress()
    done = sum(progress[unit.unit_id].samples for unit in units if unit.unit_id in progress)
    on_event = _counting(update, done, planned_samples(config.datagen, units), also)
    return start_pool(settings, units, on_event, use_gpu=_use_gpu(config))


def transfer_pool(config: JobConfig, generation_units: list[WorkUnit], config_hash: str,
                  update: ProgressUpdate, also: PoolCallback | None = None) -> ActorPool:
    """The job's transfer pool over its content stream (run it with ``run_pool``)."""
    stage = config.datagen.transfer
    on_event = _counting(update, 0, content_sample_count(config.store_dir, stage), also)
    return start_transfer_pool(
        stage, generation_units, job_store(config, config_hash), device=config.datagen.device,
        resources=config.datagen.actor_resources, on_event=on_event, use_gpu=_use_gpu(config),
    )


def run_pool(pool: ActorPool) -> PoolReport:
    """Run a pool to the end of its plan (or its ``stop``) and release its actors."""
    try:
        return pool.run()
    finally:
        pool.shutdown()


def pool_label(stage: str, stream: str) -> str:
    """What a progress bar calls a datagen pool (``stage``: ``datagen`` or ``transfer``) making ``stream``."""
    return f"generate {stream}" if stage == "datagen" else f"transfer -> {stream}"


@dataclass(frozen=True)
class PoolStage:
    """One datagen pool of a job, ready to start.

    Attributes:
        stage: ``datagen`` (the generator actors) or ``transfer`` (the metrics' ``pool`` label).
        stream: the stream it writes.
        make_pool: ``make_pool(update, also=None)`` starts the pool (Ray must be initialised),
            reporting images to ``update`` and every event to ``also``; run it with ``run_pool``.
    """

    stage: str
    stream: str
    make_pool: Callable[..., ActorPool]

    @property
    def label(self) -> str:
        """What a progress bar calls it."""
        return pool_label(self.stage, self.stream)

    def summary(self, report: PoolReport, store_dir: Path) -> str:
        """One line on what the pool made."""
        if self.stage == "datagen":
            return (f"datagen: {report.images} images in {report.shards} shards from {report.units} units "
                    f"({report.restarts} actor restarts) -> {store_dir / self.stream}")
        return f"transfer: {report.images} images in {report.shards} shards -> {store_dir / self.stream}"


def datagen_stages(config: JobConfig, plan: tuple[ActorSettings, list[WorkUnit]]) -> list[PoolStage]:
    """The job's datagen pools in the order they run: generation, then transfer when ``datagen.transfer.actors`` > 0.

    Args:
        plan: the settings and work units from ``plan_job_generation``.
    """
    settings, units = plan
    config_hash = settings.store.config_hash
    stages = [PoolStage("datagen", config.datagen.stream,
                        lambda update, also=None: generation_pool(config, settings, units, update, also))]
    if config.datagen.transfer.actors > 0:
        stages.append(PoolStage("transfer", config.datagen.transfer.stream,
                                lambda update, also=None: transfer_pool(config, units, config_hash, update, also)))
    return stages


def run_datagen_stages(
    config: JobConfig,
    plan: tuple[ActorSettings, list[WorkUnit]],
    run_stage: Callable[[PoolStage], PoolReport | None],
    stopping: Callable[[], bool] = lambda: False,
) -> dict[str, PoolReport | None]:
    """Run the job's datagen pools one after another (see ``datagen_stages``).

    Args:
        plan: the settings and work units from ``plan_job_generation``.
        run_stage: runs one stage to its end (for example ``run_pool(stage.make_pool(update))``
            under a progress bar) and returns its report.
        stopping: asked before each later stage; True starts no further pool (transfer is not
            begun once the job is stopping).

    Returns:
        ``run_stage``'s result per stream, for the stages that ran.
    """
    reports: dict[str, PoolReport | None] = {}
    for stage in datagen_stages(config, plan):
        if reports and stopping():
            break
        reports[stage.stream] = run_stage(stage)
    return reports
