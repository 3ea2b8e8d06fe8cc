"""What the job's metrics cost: generation throughput with and without them, and the per-call costs.

1. Generation: steady-state images/s of the generator actor pool (Ray, shard writing included)
   with the job's collection on (``pool_recorder`` on every pool event, the registry served by
   ``serve`` and scraped every ``--scrape-interval`` seconds, a pessimistic Prometheus) against
   off (no callback, nothing served). After one discarded warm-up run, runs alternate on/off;
   medians and the median of adjacent pairs' ratios reported. Goal: ratio >= 0.98.
2. Per call, in one thread: ``pool_recorder`` per pool event, one scrape (``generate_latest`` of the
   filled registry), and ``MetricsCallback.on_step`` per step report against one CPU training step
   of the quickstart's shape (ResNet-18, 64 + 16 images of 32 px, SGD).
A random-initialised BigGAN-deep of reduced width stands in for the real generator (speed only).

    python bench/metrics_overhead.py [--actors 2] [--images 1024] [--repeats 5] [--scrape-interval 1]
"""

import argparse
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import ray
import torch
import torchvision
from prometheus_client import generate_latest

from cluster.generation import run_pool
from cluster.metrics import JobMetrics, job_metrics, serve
from cluster.monitor import MetricsCallback, pool_recorder
from datagen.config import DatagenConfig
from datagen.generators.biggan import BigGANGenerator, random_biggan, tiny_biggan_config
from datagen.pool import PoolEvent
from datagen.service import plan_generation, start_pool
from shards.config import StoreRef
from trainers.batches import StreamStats
from trainers.callbacks import StepReport

JOB, STREAM = "bench", "interventional"


class SteadyClock:
    """A pool callback timing finished units; the rate counts only units after every actor has
    finished one (actor start-up and model loading excluded)."""

    def __init__(self, actors: int):
        self.actors = actors
        self.units: list[tuple[float, str, int]] = []

    def __call__(self, event: PoolEvent) -> None:
        if event.kind == "unit":
            self.units.append((time.perf_counter(), event.writer_id, event.images))

    def images_per_second(self) -> float:
        seen: set[str] = set()
        for index, (started, writer_id, _) in enumerate(self.units):
            seen.add(writer_id)
            if len(seen) == self.actors:
                counted = self.units[index + 1 :]
                return sum(images for _, _, images in counted) / (counted[-1][0] - started)
        raise RuntimeError("too few units for a steady-state window; raise --images")


def _scraper(url: str, interval_s: float, stop: threading.Event) -> threading.Thread:
    def scrape() -> None:
        while not stop.wait(interval_s):
            urllib.request.urlopen(url, timeout=10).read()

    thread = threading.Thread(target=scrape, daemon=True)
    thread.start()
    return thread


def generation_rate(root: Path, run: str, args: argparse.Namespace, metrics: JobMetrics | None) -> float:
    """Steady-state images/s of one pool run into a fresh stream; with ``metrics``, collected and scraped."""
    config = DatagenConfig(
        actors=args.actors, device="cpu", generator={"weights": str(root / "weights")},
        strategy={"kind": "observational", "truncation": 1.0, "seeds_per_class": args.images // 10},
        classes=list(range(10)), seeds_per_unit=args.unit_images, batch_size=args.unit_images,
    )
    settings, units = plan_generation(config, root, StoreRef(root / run, 256, 10**9, "bench"))
    clock = SteadyClock(args.actors)
    on_event: Callable[[PoolEvent], None] = clock
    stop = threading.Event()
    if metrics is not None:
        record = pool_recorder(metrics, JOB, STREAM, "datagen")
        _scraper(f"http://127.0.0.1:{serve(metrics)}/metrics", args.scrape_interval, stop)

        def on_event(event: PoolEvent) -> None:
            clock(event)
            record(event)

    try:
        run_pool(start_pool(settings, units, on_event=on_event))
    finally:
        stop.set()
    return clock.images_per_second()


def seconds_per_call(call: Callable[[], None], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls


def cpu_step_seconds(steps: int) -> float:
    """Median wall time of a quickstart-shaped CPU step: ResNet-18, 80 images of 32 px, SGD."""
    model = torchvision.models.resnet18(num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    images, labels = torch.randn(80, 3, 32, 32), torch.randint(0, 10, (80,))

    def step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()

    step()  # warm-up
    return statistics.median(seconds_per_call(step, 1) for _ in range(steps))


def step_report(step: int, rank: int) -> StepReport:
    """Two streams with running stats, like a quickstart rank's report."""
    stats = {stream: StreamStats(samples=step * size, reused_batches=step // 7, backlog=100)
             for stream, size in (("original", 64), (STREAM, 16))}
    return StepReport(step=step, rank=rank, samples={"original": 64, STREAM: 16}, stream_losses={"original": 2.1, STREAM: 2.3},
                      loss=2.2, step_s=0.08, data_wait_s=0.01, lr=0.1, stats=stats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--images", type=int, default=1024, help="images per pool run")
    parser.add_argument("--unit-images", type=int, default=16, help="images per work unit (one pool event each)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=16, help="BigGAN channel width (the real model: 128)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scrape-interval", type=float, default=1.0, help="seconds between scrapes while metrics are on")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core per actor, like the pool
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        model = random_biggan(tiny_biggan_config(num_classes=10, image_size=args.image_size, z_dim=128, channel_width=args.width))
        BigGANGenerator(model, "bench", torch.device("cpu")).save(root / "weights")
        ray.init(num_cpus=args.actors, include_dashboard=False, log_to_driver=False)
        runs: dict[str, list[float]] = {"off": [], "on": []}
        try:
            generation_rate(root, "warm-up", args, None)  # the first pool of a session starts slower (Ray's worker pool, caches)
            for repeat in range(args.repeats):
                order = ("off", "on") if repeat % 2 == 0 else ("on", "off")
                for mode in order:
                    metrics = job_metrics(JOB) if mode == "on" else None
                    runs[mode].append(generation_rate(root, f"{mode}-{repeat}", args, metrics))
                    print(f"  run {repeat} {mode:3s} {runs[mode][-1]:8.1f} images/s", flush=True)
        finally:
            ray.shutdown()
    off, on = statistics.median(runs["off"]), statistics.median(runs["on"])
    print(f"generation ({args.actors} actors, {args.images} images in units of {args.unit_images}, {args.image_size} px, "
          f"width {args.width}, scrape every {args.scrape_interval} s, median of {args.repeats}):")
    print(f"  metrics off      {off:8.1f} images/s   (runs {min(runs['off']):.1f}-{max(runs['off']):.1f})")
    print(f"  metrics on       {on:8.1f} images/s   (runs {min(runs['on']):.1f}-{max(runs['on']):.1f})   "
          f"ratio {on / off:.3f} (goal >= 0.98)")
    # Adjacent runs share the machine's load of the moment, so their ratios vary less than the rates.
    paired = statistics.median(with_metrics / without for with_metrics, without in zip(runs["on"], runs["off"], strict=True))
    print(f"  median of the {args.repeats} paired on/off ratios   {paired:.3f}")

    # One registry fed by both sides, as in a job, so the scrape exports every series.
    metrics = job_metrics(JOB)
    record = pool_recorder(metrics, JOB, STREAM, "datagen")
    event = PoolEvent("unit", "g0", images=args.unit_images, shards=1, seconds=0.1)
    event_s = seconds_per_call(lambda: record(event), 20000)
    callback = MetricsCallback(metrics, JOB)
    reports = iter([step_report(step, rank) for step in range(1, 5001) for rank in range(2)])  # running totals only grow
    on_step_s = seconds_per_call(lambda: callback.on_step(next(reports)), 10000)
    scrape_s = seconds_per_call(lambda: generate_latest(metrics.registry), 200)
    train_step_s = cpu_step_seconds(5)
    print("per call (one thread):")
    print(f"  pool_recorder per pool event   {event_s * 1e6:8.1f} us")
    print(f"  one scrape (generate_latest)   {scrape_s * 1e3:8.2f} ms")
    print(f"  MetricsCallback.on_step        {on_step_s * 1e6:8.1f} us   vs a CPU step (ResNet-18, 80 x 32 px) "
          f"{train_step_s * 1e3:.1f} ms: {on_step_s / train_step_s:.2e} of a step")
    # Robust to a noisy machine: the CPU the driver spends on metrics per second of generation,
    # as a share of the actors' cores (they compete for the same cores here).
    metrics_cpu_s = on / args.unit_images * event_s + scrape_s / args.scrape_interval
    print(f"  CPU bound: {metrics_cpu_s * 1e3:.2f} ms of driver CPU per second at {on:.0f} images/s = "
          f"{metrics_cpu_s / args.actors:.2%} of {args.actors} cores")


if __name__ == "__main__":
    main()
