"""``genint run``: the whole job on an embedded local Ray.

Static streams are prepared, the generator trained and its directions computed where missing;
then generation (and transfer) run beside training, which follows the growing streams; the store
is verified and the job summarised. Metrics are served on 127.0.0.1 while it runs.
"""

import threading
from dataclasses import dataclass
from pathlib import Path

from cluster.config import JobConfig, save_resolved
from cluster.errors import ClusterError
from cluster.generation import (
    compute_job_directions,
    generation_pool,
    plan_job_generation,
    run_pool,
    train_generator,
    transfer_pool,
)
from cluster.local_ray import cluster_has_gpus, ray_session
from cluster.metrics import JobMetrics, job_metrics, serve
from cluster.monitor import MetricsCallback, pool_recorder
from cluster.progress import console, progress_bar, progress_board
from cluster.training import check_streams_committed, train_job
from datagen.actors import ActorSettings
from datagen.pool import PoolReport
from datagen.units import WorkUnit
from shards.inspect import StreamSummary, summarize_store
from shards.prepare import PrepareReport, prepare_imagefolder
from shards.verify import verify_store
from trainers.callbacks import TrainResult


@dataclass
class JobResult:
    """What a run produced."""

    config_hash: str
    prepared: dict[str, PrepareReport]
    streams: list[StreamSummary]
    output_dir: Path
    generated: dict[str, PoolReport]  # per stream written by datagen
    trained_samples: dict[str, int]  # per stream, all ranks
    final_losses: dict[str, float]  # rank 0's last step, per stream
    train: TrainResult
    metrics_url: str


def prepare_streams(config: JobConfig, config_hash: str) -> dict[str, PrepareReport]:
    """Build every static stream the config lists (resuming any that a crash interrupted)."""
    reports = {}
    for stream, prepare in config.shards.prepare.items():
        with progress_bar(f"prepare {stream}") as update:
            reports[stream] = prepare_imagefolder(
                prepare.source,
                config.store_dir,
                stream,
                seed=prepare.seed,
                unit_size=prepare.unit_size,
                max_samples=config.shards.max_samples_per_shard,
                max_bytes=config.shards.max_bytes_per_shard,
                config_hash=config_hash,
                workers=prepare.workers,
                on_progress=update,
            )
    return reports


def prepare_generation(config: JobConfig, config_hash: str) -> tuple[ActorSettings, list[WorkUnit]] | None:
    """Finish what generation needs that is not there yet (a trained CVAE, the directions), then plan it.

    Finished stages are reused: an existing generator directory or directions file is not redone.
    """
    datagen = config.datagen
    if datagen.actors < 1:
        return None
    if datagen.generator.kind == "cvae" and not Path(datagen.weights_path(config.output_dir)).exists():
        train_generator(config)
    if datagen.strategy.kind == "intervention" and not datagen.directions_path(config.output_dir).exists():
        compute_job_directions(config)
    return plan_job_generation(config, config_hash)


class _Generation(threading.Thread):
    """Generation, then transfer, beside training; ``stop`` ends it after the in-flight units."""

    def __init__(self, config: JobConfig, config_hash: str, settings: ActorSettings, units: list[WorkUnit], add_bar, metrics: JobMetrics):
        super().__init__(name="genint-generation", daemon=True)
        self.config, self.config_hash, self.settings, self.units = config, config_hash, settings, units
        self.add_bar, self.metrics = add_bar, metrics
        self.reports: dict[str, PoolReport] = {}
        self.error: BaseException | None = None
        self._stopped = threading.Event()
        self._pool = None
        self._lock = threading.Lock()

    def _run_pool(self, stream: str, pool) -> None:
        with self._lock:
            self._pool = pool
        if self._stopped.is_set():
            pool.stop()
        self.reports[stream] = run_pool(pool)

    def run(self) -> None:
        config, name = self.config, self.config.name
        try:
            stream = config.datagen.stream
            self._run_pool(stream, generation_pool(config, self.settings, self.units, self.add_bar(f"generate {stream}"),
                                                   pool_recorder(self.metrics, name, stream, "datagen")))
            stage = config.datagen.transfer
            if stage.actors > 0 and not self._stopped.is_set():
                self._run_pool(stage.stream, transfer_pool(config, self.units, self.config_hash, self.add_bar(f"transfer -> {stage.stream}"),
                                                           pool_recorder(self.metrics, name, stage.stream, "transfer")))
        except BaseException as error:  # re-raised in the driver by finish()
            self.error = error

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            if self._pool is not None:
                self._pool.stop()

    def finish(self) -> dict[str, PoolReport]:
        self.join()
        if self.error is not None:
            raise self.error
        return self.reports


def run_job(config: JobConfig) -> JobResult:
    """Run the job on this machine: prepare, generate and train at the same time, verify, summarise.

    Training follows the streams generation writes (they grow while it runs). When training
    ends, generation stops after its in-flight units; a rerun resumes both where they stopped.

    Raises:
        ClusterError: when the store fails verification.
    """
    digest = save_resolved(config)
    prepared = prepare_streams(config, digest)
    plan = prepare_generation(config, digest)
    growing = frozenset()
    if plan is not None:
        growing = frozenset({config.datagen.stream} | ({config.datagen.transfer.stream} if config.datagen.transfer.actors else set()))
    check_streams_committed(config, growing)
    metrics = job_metrics(config.name)
    with ray_session(), progress_board() as add_bar:
        port = serve(metrics, config.metrics.host, config.metrics.port)
        console.print(f"metrics: http://{config.metrics.host}:{port}/metrics")
        generation = _Generation(config, digest, *plan, add_bar, metrics) if plan is not None else None
        if generation is not None:
            generation.start()
        recorder = MetricsCallback(metrics, config.name)
        try:
            trained, last = train_job(config, add_bar("train"), growing, [recorder], use_gpu=cluster_has_gpus())
        finally:
            if generation is not None:
                generation.stop()
        generated = generation.finish() if generation is not None else {}
    findings, _ = verify_store(config.store_dir)
    problems = [finding for finding in findings if finding.is_problem]
    if problems:
        raise ClusterError(f"shard store {config.store_dir} failed verification: {problems[0]} (+{len(problems) - 1} more)")
    return JobResult(
        digest, prepared, summarize_store(config.store_dir), config.output_dir, generated, dict(recorder.samples),
        last.stream_losses if last else {}, trained, f"http://{config.metrics.host}:{port}/metrics",
    )
