"""The job's Prometheus metrics: one registry per job, every series labelled with ``job``.

Names follow Prometheus conventions (counters end in ``_total``, durations in ``_seconds``).
The controller feeds them from datagen pool events and trainer step reports; ``serve`` exposes
them on one endpoint (127.0.0.1 unless the config says otherwise).
"""

from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

# Step and data-wait durations span milliseconds (tiny CPU jobs) to seconds (ResNet-152 steps).
_DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class JobMetrics:
    """Every metric genint exports, bound to one job's registry."""

    registry: CollectorRegistry
    images_generated: Counter
    shards_committed: Counter
    samples_trained: Counter
    step_seconds: Histogram
    data_wait_seconds: Histogram
    loss: Gauge
    backlog: Gauge
    reused_batches: Counter
    skipped_batches: Counter
    bad_samples: Counter
    actor_restarts: Counter
    actors: Gauge
    trainer_workers: Gauge
    train_step: Gauge


def job_metrics(job: str) -> JobMetrics:
    """A fresh registry holding genint's metrics, each with the constant label ``job``."""
    registry = CollectorRegistry()
    labels = {"registry": registry, "namespace": "genint"}

    def counter(name: str, text: str, *label_names: str) -> Counter:
        return Counter(name, text, ["job", *label_names], **labels)

    def gauge(name: str, text: str, *label_names: str) -> Gauge:
        return Gauge(name, text, ["job", *label_names], **labels)

    def histogram(name: str, text: str, *label_names: str) -> Histogram:
        return Histogram(name, text, ["job", *label_names], buckets=_DURATION_BUCKETS, **labels)

    return JobMetrics(
        registry=registry,
        images_generated=counter("images_generated", "Images written to shards by datagen", "stream", "actor"),
        shards_committed=counter("shards_committed", "Shards committed to the manifest", "stream", "actor"),
        samples_trained=counter("samples_trained", "Samples consumed by training", "stream", "rank"),
        step_seconds=histogram("step_seconds", "Training step wall time", "rank"),
        data_wait_seconds=histogram("data_wait_seconds", "Time a training step waited for data", "rank"),
        loss=gauge("loss", "Latest per-stream mean loss (rank 0)", "stream"),
        backlog=gauge("stream_backlog_samples", "Committed samples not yet read (rank 0)", "stream"),
        reused_batches=counter("reused_batches", "Batches served from already-read data (when_short: reuse)", "stream"),
        skipped_batches=counter("skipped_batches", "Steps a stream was skipped (when_short: skip)", "stream"),
        bad_samples=counter("bad_samples", "Undecodable or truncated samples skipped", "stream"),
        actor_restarts=counter("actor_restarts", "Dead actors replaced", "pool"),
        actors=gauge("actors", "Live actors per pool", "pool"),
        trainer_workers=gauge("trainer_workers", "Training workers"),
        train_step=gauge("train_step", "Latest training step"),
    )


def serve(metrics: JobMetrics, host: str = "127.0.0.1", port: int = 0) -> int:
    """Serve the registry over HTTP on ``host``; return the bound port (``port=0`` picks a free one)."""
    server, _ = start_http_server(port, addr=host, registry=metrics.registry)
    return server.server_port
