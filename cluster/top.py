"""``genint top``: a live view of a job's Prometheus endpoint.

Two layers: ``fetch_snapshot`` / ``parse_snapshot`` turn one scrape into per-stream and per-pool
totals, ``interval_rates`` turns two of them into rates; ``render`` only lays a ``TopModel`` out.
``run_top`` takes a URL, so any way of finding a job's endpoint can feed it.
"""

import math
import time
import urllib.request
from urllib.parse import urlsplit
from collections import defaultdict, deque
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cluster.errors import ClusterError, ConfigError
from cluster.progress import console as stdout_console

SPARK_CHARS = "▁▂▃▄▅▆▇█"
NO_VALUE = "-"
MAX_INTERVAL_S = 3600.0
MAX_METRICS_BYTES = 64 * 2**20  # a job's scrape is kilobytes; an endless body must not fill memory


@dataclass(frozen=True)
class MetricsSnapshot:
    """One scrape, summed over actors and ranks. Dicts are keyed by stream, except the pool ones."""

    taken_at_s: float  # time.monotonic() when the scrape arrived
    jobs: tuple[str, ...]
    images_generated: dict[str, float]
    samples_trained: dict[str, float]
    step_seconds: float  # sum over ranks of every step's wall time
    data_wait_seconds: float  # the part of it spent waiting for data
    losses: dict[str, float]
    backlog: dict[str, float]
    reused_batches: dict[str, float]
    skipped_batches: dict[str, float]
    bad_samples: dict[str, float]
    actor_restarts: dict[str, float]  # per pool
    actors: dict[str, float]  # per pool
    trainer_workers: float | None
    train_step: float | None

    @property
    def streams(self) -> list[str]:
        per_stream = (self.images_generated, self.samples_trained, self.losses, self.backlog,
                      self.reused_batches, self.skipped_batches, self.bad_samples)
        return sorted(set().union(*per_stream))

    @property
    def pools(self) -> list[str]:
        return sorted(self.actors.keys() | self.actor_restarts.keys())


@dataclass(frozen=True)
class Rates:
    """What changed between two snapshots, per second of the interval between them."""

    interval_s: float
    images_per_s: dict[str, float]
    samples_per_s: dict[str, float]
    data_wait_share: float | None  # None when no training step finished in the interval


def _by_label(samples: dict[str, list[Sample]], name: str, label: str) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for sample in samples.get(name, []):
        if label not in sample.labels:
            raise ValueError(f"series {name} has no {label!r} label (labels: {', '.join(sorted(sample.labels)) or 'none'})")
        totals[sample.labels[label]] += sample.value
    return dict(totals)


def _total(samples: dict[str, list[Sample]], name: str) -> float | None:
    found = samples.get(name)
    return sum(sample.value for sample in found) if found else None


def parse_snapshot(text: str, taken_at_s: float) -> MetricsSnapshot:
    """Sum a Prometheus exposition's genint series into a snapshot.

    Raises:
        ValueError: the text is not the Prometheus exposition format, or a genint series lacks the
            label it is summed by (``stream`` or ``pool``).
    """
    samples: dict[str, list[Sample]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name].append(sample)
    jobs = {sample.labels["job"] for group in samples.values() for sample in group if "job" in sample.labels}
    return MetricsSnapshot(
        taken_at_s=taken_at_s,
        jobs=tuple(sorted(jobs)),
        images_generated=_by_label(samples, "genint_images_generated_total", "stream"),
        samples_trained=_by_label(samples, "genint_samples_trained_total", "stream"),
        step_seconds=_total(samples, "genint_step_seconds_sum") or 0.0,
        data_wait_seconds=_total(samples, "genint_data_wait_seconds_sum") or 0.0,
        losses=_by_label(samples, "genint_loss", "stream"),
        backlog=_by_label(samples, "genint_stream_backlog_samples", "stream"),
        reused_batches=_by_label(samples, "genint_reused_batches_total", "stream"),
        skipped_batches=_by_label(samples, "genint_skipped_batches_total", "stream"),
        bad_samples=_by_label(samples, "genint_bad_samples_total", "stream"),
        actor_restarts=_by_label(samples, "genint_actor_restarts_total", "pool"),
        actors=_by_label(samples, "genint_actors", "pool"),
        trainer_workers=_total(samples, "genint_trainer_workers"),
        train_step=_total(samples, "genint_train_step"),
    )


def check_interval(seconds: float) -> float:
    """``seconds`` if it is a usable poll interval (finite, > 0, at most MAX_INTERVAL_S).

    Raises:
        ConfigError: it is not (``inf`` would make the first sleep raise, ``nan`` never compares).
    """
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_INTERVAL_S):
        raise ConfigError(f"--interval must be a number of seconds > 0 and <= {MAX_INTERVAL_S:g} (got {seconds})")
    return seconds


def check_metrics_url(url: str) -> str:
    """``url`` if it is an ``http(s)://HOST[:PORT]/...`` URL.

    Raises:
        ConfigError: another scheme (``file:`` would read a local file), no host, or a bad port.
    """
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError for a port that is no number or out of range
        well_formed = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        well_formed = False
    if not well_formed:
        raise ConfigError(f"--metrics {url!r}: unknown url type; give the URL genint run prints, "
                          "e.g. http://127.0.0.1:PORT/metrics")
    return url


def fetch_snapshot(url: str, timeout_s: float = 5.0) -> MetricsSnapshot:
    """Scrape ``url`` once.

    Raises:
        ConfigError: ``url`` is not an http(s) URL.
        ClusterError: the URL is unreachable, or does not serve genint's metrics.
    """
    check_metrics_url(url)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body = response.read(MAX_METRICS_BYTES + 1)
        text = body.decode()
    except (OSError, ValueError) as error:  # URLError/HTTPError/timeouts are OSErrors; bad UTF-8 a ValueError
        reason = getattr(error, "reason", error)
        raise ClusterError(f"cannot read metrics from {url}: {reason} (pass the URL genint run prints, "
                           "e.g. http://127.0.0.1:PORT/metrics)") from error
    if len(body) > MAX_METRICS_BYTES:
        raise ClusterError(f"{url} answered more than {MAX_METRICS_BYTES // 2**20} MiB; a genint job's metrics are kilobytes")
    # A job's registry declares every family from the start, so "genint_" appears before any sample does.
    if "genint_" not in text:
        raise ClusterError(f"{url} serves no genint_ metrics; is it a genint job's metrics endpoint?")
    try:
        return parse_snapshot(text, time.monotonic())
    except ValueError as error:
        raise ClusterError(f"{url} does not serve genint's Prometheus metrics: {error}") from error


def _increase(before: float, after: float) -> float:
    # A counter that went down was reset (the job restarted); like Prometheus' rate(), count from zero.
    return after - before if after >= before else after


def _per_second(before: dict[str, float], after: dict[str, float], interval_s: float) -> dict[str, float]:
    return {key: _increase(before.get(key, 0.0), value) / interval_s for key, value in after.items()}


def data_wait_share(data_wait_s: float, step_s: float) -> float | None:
    """The fraction of step time spent waiting for data (a step's time includes its wait)."""
    return data_wait_s / step_s if step_s > 0 else None


def interval_rates(before: MetricsSnapshot, after: MetricsSnapshot) -> Rates:
    """Per-stream images/s and samples/s, and the data-wait share, between two snapshots."""
    interval_s = after.taken_at_s - before.taken_at_s
    if interval_s <= 0:
        raise ValueError(f"snapshots must be in time order (interval {interval_s} s)")
    return Rates(
        interval_s=interval_s,
        images_per_s=_per_second(before.images_generated, after.images_generated, interval_s),
        samples_per_s=_per_second(before.samples_trained, after.samples_trained, interval_s),
        data_wait_share=data_wait_share(_increase(before.data_wait_seconds, after.data_wait_seconds),
                                        _increase(before.step_seconds, after.step_seconds)),
    )


class TopModel:
    """The latest snapshot, the rates since the one before, and recent rates per stream (sparklines)."""

    def __init__(self, history: int = 12):
        self.latest: MetricsSnapshot | None = None
        self.rates: Rates | None = None
        self.images_history: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=history))
        self.samples_history: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=history))

    def add(self, snapshot: MetricsSnapshot) -> None:
        if self.latest is not None:
            self.rates = interval_rates(self.latest, snapshot)
            for stream, rate in self.rates.images_per_s.items():
                self.images_history[stream].append(rate)
            for stream, rate in self.rates.samples_per_s.items():
                self.samples_history[stream].append(rate)
        self.latest = snapshot


def sparkline(values: list[float]) -> str:
    """Block characters scaled from zero to the largest value (all lowest when every value is 0)."""
    peak = max(values, default=0.0)
    top = len(SPARK_CHARS) - 1
    return "".join(SPARK_CHARS[round(value / peak * top) if peak > 0 else 0] for value in values)


def _number(value: float | None, digits: int = 0) -> str:
    return NO_VALUE if value is None else f"{value:,.{digits}f}"


def _share(value: float | None) -> str:
    return NO_VALUE if value is None else f"{value:.1%}"


def _table(title: str, *columns: str) -> Table:
    # No vertical rules and names left, figures right: the three tables fit an 80-column terminal.
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)
    for index, column in enumerate(columns):
        table.add_column(column, justify="right" if index and column != "trend" else "left", no_wrap=True)
    return table


def render(model: TopModel, note: str = "") -> Group:
    """The dashboard: header lines, then generation, training and actor-pool tables."""
    snapshot, rates = model.latest, model.rates
    assert snapshot is not None, "render needs at least one snapshot"
    header = Text.assemble(
        ("job ", "bold"), ", ".join(snapshot.jobs) or NO_VALUE,
        "   train step ", _number(snapshot.train_step), "   trainer workers ", _number(snapshot.trainer_workers),
        "\ndata wait ", _share(rates.data_wait_share if rates else None),
        f" of step time in the last {rates.interval_s:.1f} s, " if rates else " of step time lately, ",
        _share(data_wait_share(snapshot.data_wait_seconds, snapshot.step_seconds)), " overall",
    )
    generation = _table("generation", "stream", "images/s", "trend", "images")
    for stream, images in sorted(snapshot.images_generated.items()):
        rate = rates.images_per_s.get(stream) if rates else None
        generation.add_row(stream, _number(rate, 1), sparkline(list(model.images_history[stream])), _number(images))
    training = _table("training", "stream", "samples/s", "trend", "backlog", "loss", "reused", "skipped", "bad")
    for stream in snapshot.streams:
        rate = rates.samples_per_s.get(stream) if rates else None
        training.add_row(
            stream, _number(rate, 1), sparkline(list(model.samples_history[stream])),
            _number(snapshot.backlog.get(stream)), _number(snapshot.losses.get(stream), 4),
            _number(snapshot.reused_batches.get(stream)), _number(snapshot.skipped_batches.get(stream)),
            _number(snapshot.bad_samples.get(stream)),
        )
    pools = _table("actor pools", "pool", "actors", "restarts")
    for pool in snapshot.pools:
        pools.add_row(pool, _number(snapshot.actors.get(pool)), _number(snapshot.actor_restarts.get(pool)))
    parts = [header, generation, training, pools]
    if note:
        parts.append(Text(note, style="red"))
    return Group(*parts)


def run_top(url: str, interval_s: float = 2.0, once: bool = False, console: Console = stdout_console) -> None:
    """Poll ``url`` every ``interval_s`` and show the dashboard until Ctrl-C; ``once``: two polls, print, return.

    Raises:
        ConfigError: a bad ``url`` or ``interval_s``.
        ClusterError: the first poll fails (later failures show on the dashboard while it retries).
    """
    check_interval(interval_s)
    model = TopModel()
    model.add(fetch_snapshot(url))
    if once:
        time.sleep(interval_s)
        model.add(fetch_snapshot(url))
        console.print(render(model))
        return
    with Live(render(model), console=console, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(interval_s)
                note = ""
                try:
                    model.add(fetch_snapshot(url))
                except ClusterError as error:  # the job may be restarting or done: keep the last figures
                    note = f"{error}; showing the last figures"
                live.update(render(model, note), refresh=True)
        except KeyboardInterrupt:  # Ctrl-C is how a top ends
            pass
