"""Feeding the job's metrics: datagen pool events and trainer step reports become Prometheus series."""

from collections.abc import Callable

from cluster.metrics import JobMetrics
from datagen.pool import PoolEvent
from trainers.batches import StreamStats
from trainers.callbacks import StepReport, TrainCallback


def pool_recorder(metrics: JobMetrics, job: str, stream: str, pool: str) -> Callable[[PoolEvent], None]:
    """A pool ``on_event`` callback that counts images, shards, restarts and tracks the actor count."""

    def record(event: PoolEvent) -> None:
        if event.kind in ("unit", "shards"):
            metrics.images_generated.labels(job=job, stream=stream, actor=event.writer_id).inc(event.images)
            metrics.shards_committed.labels(job=job, stream=stream, actor=event.writer_id).inc(event.shards)
        elif event.kind == "restart":
            metrics.actor_restarts.labels(job=job, pool=pool).inc()
        elif event.kind == "placement":  # live actors; a resize only sets the target
            metrics.actors.labels(job=job, pool=pool).set(event.actors)

    return record


class MetricsCallback(TrainCallback):
    """Turns every rank's step reports into the training series.

    A source's StreamStats are running totals per rank; counters advance by the difference
    from that rank's previous report.
    """

    def __init__(self, metrics: JobMetrics, job: str):
        self.metrics, self.job = metrics, job
        self._previous: dict[tuple[int, str], StreamStats] = {}

    def on_step(self, report: StepReport) -> None:
        metrics, job, rank = self.metrics, self.job, str(report.rank)
        for stream, count in report.samples.items():
            metrics.samples_trained.labels(job=job, stream=stream, rank=rank).inc(count)
        metrics.step_seconds.labels(job=job, rank=rank).observe(report.step_s)
        metrics.data_wait_seconds.labels(job=job, rank=rank).observe(report.data_wait_s)
        for stream, stats in report.stats.items():
            before = self._previous.get((report.rank, stream), StreamStats())
            metrics.reused_batches.labels(job=job, stream=stream).inc(stats.reused_batches - before.reused_batches)
            metrics.skipped_batches.labels(job=job, stream=stream).inc(stats.skipped_batches - before.skipped_batches)
            metrics.bad_samples.labels(job=job, stream=stream).inc(stats.bad_samples - before.bad_samples)
            self._previous[(report.rank, stream)] = stats
        if report.rank == 0:
            metrics.train_step.labels(job=job).set(report.step)
            for stream, loss in report.stream_losses.items():
                metrics.loss.labels(job=job, stream=stream).set(loss)
            for stream, stats in report.stats.items():
                metrics.backlog.labels(job=job, stream=stream).set(stats.backlog)
