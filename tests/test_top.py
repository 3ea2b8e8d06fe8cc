"""`genint top`: figures computed from a real job registry served over HTTP on loopback."""

import dataclasses
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server
from rich.console import Console

from cluster.errors import ClusterError, ConfigError
from cluster.metrics import JobMetrics, job_metrics, serve
from cluster.top import (
    TopModel,
    check_interval,
    fetch_snapshot,
    interval_rates,
    parse_snapshot,
    render,
    sparkline,
)

GENINT = Path(sys.executable).parent / "genint"


def _served(job: str) -> tuple[JobMetrics, str]:
    metrics = job_metrics(job)
    return metrics, f"http://127.0.0.1:{serve(metrics)}/metrics"


def _at(snapshot, taken_at_s: float):
    """The same figures, as if scraped at ``taken_at_s`` (exact rates without sleeping)."""
    return dataclasses.replace(snapshot, taken_at_s=taken_at_s)


JOB = "digits"


def _progress(metrics: JobMetrics, images: tuple[int, int], samples: tuple[int, int], steps: list[tuple[float, float]]) -> None:
    """Images from actors g0 and g1; on each of ranks 0 and 1, (original, interventional) samples
    and one step's (step_s, data_wait_s)."""
    for actor, count in zip(("g0", "g1"), images, strict=True):
        metrics.images_generated.labels(job=JOB, stream="interventional", actor=actor).inc(count)
    for rank, (step_s, wait_s) in zip(("0", "1"), steps, strict=True):
        metrics.samples_trained.labels(job=JOB, stream="original", rank=rank).inc(samples[0])
        metrics.samples_trained.labels(job=JOB, stream="interventional", rank=rank).inc(samples[1])
        metrics.step_seconds.labels(job=JOB, rank=rank).observe(step_s)
        metrics.data_wait_seconds.labels(job=JOB, rank=rank).observe(wait_s)


@pytest.fixture
def running_job():
    """A served registry part-way through a job: two streams, two ranks, two actors."""
    metrics, url = _served(JOB)
    _progress(metrics, (100, 60), (256, 128), [(1.0, 0.1), (1.0, 0.1)])
    metrics.loss.labels(job=JOB, stream="original").set(2.25)
    metrics.loss.labels(job=JOB, stream="interventional").set(1.75)
    metrics.backlog.labels(job=JOB, stream="interventional").set(37)
    metrics.actors.labels(job=JOB, pool="datagen").set(2)
    metrics.actor_restarts.labels(job=JOB, pool="datagen").inc()
    metrics.trainer_workers.labels(job=JOB).set(2)
    metrics.train_step.labels(job=JOB).set(4)
    metrics.reused_batches.labels(job=JOB, stream="interventional").inc(3)
    metrics.bad_samples.labels(job=JOB, stream="original").inc(1)
    return metrics, url


def _advance(metrics: JobMetrics) -> None:
    """One more step on each rank and 40 more images, between two polls."""
    _progress(metrics, (25, 15), (128, 64), [(0.5, 0.3), (0.5, 0.1)])
    metrics.loss.labels(job=JOB, stream="interventional").set(1.5)
    metrics.train_step.labels(job=JOB).set(6)


def test_snapshot_sums_actors_and_ranks(running_job):
    _, url = running_job
    snapshot = fetch_snapshot(url)
    assert snapshot.jobs == ("digits",)
    assert snapshot.images_generated == {"interventional": 160}
    assert snapshot.samples_trained == {"original": 512, "interventional": 256}
    assert snapshot.step_seconds == pytest.approx(2.0) and snapshot.data_wait_seconds == pytest.approx(0.2)
    assert snapshot.losses == {"original": 2.25, "interventional": 1.75}
    assert snapshot.backlog == {"interventional": 37}
    assert snapshot.actors == {"datagen": 2} and snapshot.actor_restarts == {"datagen": 1}
    assert snapshot.trainer_workers == 2 and snapshot.train_step == 4
    assert snapshot.reused_batches == {"interventional": 3} and snapshot.bad_samples == {"original": 1}
    assert snapshot.streams == ["interventional", "original"] and snapshot.pools == ["datagen"]


def test_rates_and_data_wait_share_between_polls(running_job):
    metrics, url = running_job
    before = fetch_snapshot(url)
    _advance(metrics)
    after = _at(fetch_snapshot(url), before.taken_at_s + 2.0)
    rates = interval_rates(before, after)
    assert rates.interval_s == 2.0
    assert rates.images_per_s == {"interventional": pytest.approx(20.0)}
    assert rates.samples_per_s == {"original": pytest.approx(128.0), "interventional": pytest.approx(64.0)}
    assert rates.data_wait_share == pytest.approx(0.4)  # (0.3 + 0.1) s of (0.5 + 0.5) s
    assert after.losses["interventional"] == 1.5 and after.train_step == 6


def test_no_step_in_the_interval_has_no_data_wait_share(running_job):
    _, url = running_job
    snapshot = fetch_snapshot(url)
    rates = interval_rates(snapshot, _at(snapshot, snapshot.taken_at_s + 2.0))
    assert rates.data_wait_share is None
    assert rates.images_per_s == {"interventional": 0.0}


def test_a_restarted_job_counts_from_zero():
    old, old_url = _served(JOB)
    old.images_generated.labels(job=JOB, stream="interventional", actor="g0").inc(500)
    new, new_url = _served(JOB)
    new.images_generated.labels(job=JOB, stream="interventional", actor="g0").inc(30)
    before = fetch_snapshot(old_url)
    rates = interval_rates(before, _at(fetch_snapshot(new_url), before.taken_at_s + 3.0))
    assert rates.images_per_s == {"interventional": pytest.approx(10.0)}


def test_model_keeps_a_history_per_stream_and_renders_it(running_job):
    metrics, url = running_job
    model, first = TopModel(history=3), fetch_snapshot(url)
    model.add(first)
    for polls in range(1, 5):
        _advance(metrics)
        model.add(_at(fetch_snapshot(url), first.taken_at_s + polls))
    assert list(model.images_history["interventional"]) == [40.0, 40.0, 40.0]  # the last three intervals
    recorder = Console(record=True, width=100)
    recorder.print(render(model))
    text = recorder.export_text()
    for expected in ("interventional", "original", "40.0", "128.0", "1.5000", "2.2500", "datagen", "40.0%", "███"):
        assert expected in text, expected


def test_sparkline_scales_from_zero_to_the_peak():
    assert sparkline([]) == ""
    assert sparkline([0.0, 0.0]) == "▁▁"
    line = sparkline([0.0, 1.0, 2.0, 4.0, 8.0])
    assert line[0] == "▁" and line[-1] == "█" and list(line) == sorted(line)


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_and_foreign_endpoints_are_errors():
    with pytest.raises(ClusterError, match="cannot read metrics from"):
        fetch_snapshot(f"http://127.0.0.1:{_unused_port()}/metrics")
    with pytest.raises(ClusterError, match="unknown url type"):
        fetch_snapshot("127.0.0.1:9090")
    other = CollectorRegistry()
    Counter("requests", "Another exporter's counter", registry=other).inc()
    server, _ = start_http_server(0, addr="127.0.0.1", registry=other)
    with pytest.raises(ClusterError, match="serves no genint_ metrics"):
        fetch_snapshot(f"http://127.0.0.1:{server.server_port}/metrics")
    server.shutdown()


def test_series_without_the_label_top_sums_by_are_refused():
    assert parse_snapshot('genint_loss{job="j",stream="s"} 1.5\n', 0.0).losses == {"s": 1.5}
    with pytest.raises(ValueError, match="series genint_loss has no 'stream' label \\(labels: job\\)"):
        parse_snapshot('genint_loss{job="j"} 1.5\n', 0.0)
    with pytest.raises(ValueError, match="series genint_actor_restarts_total has no 'pool' label"):
        parse_snapshot('genint_actor_restarts_total{job="j"} 1\n', 0.0)


@pytest.mark.parametrize("seconds", [float("inf"), float("nan"), 0.0, -1.0, 3601.0])
def test_intervals_that_cannot_be_slept_are_refused(seconds):
    with pytest.raises(ConfigError, match="--interval must be a number of seconds > 0 and <= 3600"):
        check_interval(seconds)


def test_usable_intervals_pass():
    assert check_interval(0.1) == 0.1 and check_interval(3600.0) == 3600.0


def test_cli_once_prints_streams_and_figures(running_job):
    _, url = running_job
    done = subprocess.run([str(GENINT), "top", "--metrics", url, "--once", "--interval", "0.1"],
                          check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for expected in ("digits", "interventional", "original", "1.7500", "2.2500", "160", "datagen", "train step 4"):
        assert expected in done.stdout, expected


def test_cli_unreachable_url_is_one_line_and_exit_1():
    url = f"http://127.0.0.1:{_unused_port()}/metrics"
    done = subprocess.run([str(GENINT), "top", "--metrics", url, "--once"], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"genint: error: cannot read metrics from {url}")
    assert done.stdout == ""


def test_cli_needs_exactly_one_of_job_and_url():
    for arguments in ([], ["somejob", "--metrics", "http://127.0.0.1:1/metrics"]):
        done = subprocess.run([str(GENINT), "top", *arguments, "--once"], check=False, capture_output=True, text=True, timeout=300)
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and "JOB's name or --metrics URL" in done.stderr
