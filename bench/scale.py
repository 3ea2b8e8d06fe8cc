"""Job size: per-unit bookkeeping of generation, and the trainer's start on a long stream.

1. Datagen: a job of N work units through the real ``ActorPool``, ``UnitWriter`` and ``ShardWriter``
   on a local Ray (loopback, 2 CPUs, 2 actors), with a trivial producer (no model: the same small
   PNG for every sample). Per-unit overhead is the steady-state wall time per unit, from the first
   unit's report to the last (actor start and the final close left out), less the producer's own
   time per unit (measured apart, in-process). Sizes alternate within each repeat; medians. The
   baseline is the smallest N; the goal is the largest N within 1.5x of it. Also printed: what one
   from-scratch ``Manifest.unit_progress()`` of the finished job costs, which is what every unit
   paid before progress was followed (``UnitTracker``).
2. Trainer: a static stream of ``--stream-shards`` shards. Start-up is ``build_batch_source`` up to
   its first batch (the reader checks of every shard, then DALI's reader over their indexes), and
   ``check_committed_shards`` alone; goal under 2 s. Following is one ``ManifestFollower.poll`` plus
   ``check_shard`` (what the growing reader does per new shard) after each new commit, with the
   manifest holding 100 shards against ``--stream-shards``; goal: the same cost per shard.

    .venv/bin/python -m bench.scale [--quick] [--repeats 3] [--stream-shards 10000]
"""

import argparse
import io
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cluster.local_ray import ray_session
from datagen.pool import ActorPool, PoolEvent
from datagen.unit_writer import UnitReport, UnitWriter
from shards.config import StoreRef
from shards.manifest import Manifest, ManifestFollower
from shards.reader import check_committed_shards, check_shard
from shards.writer import ShardWriter
from trainers.config import StreamConfig
from trainers.data.config import LoaderConfig
from trainers.data.source import build_batch_source

STREAM = "interventional"
SAMPLES_PER_UNIT = 2
SAMPLES_PER_SHARD = 100  # 50 units per manifest line: 2,000 lines at N = 100,000
ACTORS = 2
OVERHEAD_GOAL = 1.5
START_GOAL_S = 2.0
FOLLOW_GOAL = 1.5


def constant_png(size_px: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size_px, size_px, 3), 128, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class BenchUnit:
    index: int

    @property
    def unit_id(self) -> str:
        return f"u{self.index}"


def unit_samples(unit: BenchUnit, start: int, png: bytes):
    """The trivial producer: SAMPLES_PER_UNIT copies of one PNG, from sample ``start`` of the unit."""
    for sample in range(start, SAMPLES_PER_UNIT):
        yield {"__key__": f"{unit.unit_id}_{sample}", "png": png, "cls": unit.index % 10, "json": {"unit": unit.unit_id}}


class ConstantActor:
    """A generator actor without a model: the pool's actor interface over the real UnitWriter."""

    def __init__(self, store: StoreRef, writer_id: str):
        self.png = constant_png()
        self.writer = UnitWriter(store, STREAM, writer_id)

    def run_unit(self, unit: BenchUnit) -> UnitReport:
        return self.writer.write_unit(unit.unit_id, lambda start: unit_samples(unit, start, self.png))

    def close(self) -> int:
        return self.writer.close()


def producer_s_per_unit(units: int = 20_000) -> float:
    png = constant_png()
    start = time.perf_counter()
    for index in range(units):
        for _ in unit_samples(BenchUnit(index), 0, png):
            pass
    return (time.perf_counter() - start) / units


def job_s_per_unit(root: Path, units: int) -> tuple[float, Path]:
    """Steady-state seconds per unit of one job of ``units`` units; returns it and the stream dir."""
    store = StoreRef(root, SAMPLES_PER_SHARD, 2**30, "bench")
    reported: list[float] = []

    def on_event(event: PoolEvent) -> None:
        if event.kind == "unit":
            reported.append(time.perf_counter())

    pool = ActorPool(ConstantActor, (store,), store.stream_dir(STREAM), [BenchUnit(index) for index in range(units)],
                     ACTORS, on_event, poll_interval_s=0.05)
    report = pool.run()
    pool.shutdown()
    assert report.units == units and report.images == units * SAMPLES_PER_UNIT, report
    return (reported[-1] - reported[0]) / (len(reported) - 1), store.stream_dir(STREAM)


def fresh_read_s(stream_dir: Path) -> float:
    start = time.perf_counter()
    Manifest(stream_dir).unit_progress()
    return time.perf_counter() - start


def datagen_part(sizes: list[int], repeats: int) -> dict[int, float]:
    producer = producer_s_per_unit()
    per_unit: dict[int, list[float]] = {size: [] for size in sizes}
    fresh: dict[int, float] = {}
    with ray_session(num_cpus=ACTORS):
        for repeat in range(repeats):
            for size in sizes:
                with tempfile.TemporaryDirectory() as temporary:
                    seconds, stream_dir = job_s_per_unit(Path(temporary), size)
                    per_unit[size].append(seconds - producer)
                    if repeat == 0:
                        fresh[size] = statistics.median(fresh_read_s(stream_dir) for _ in range(3))
                print(f"  repeat {repeat + 1}: N={size:>7,}  {per_unit[size][-1] * 1e3:.3f} ms/unit", flush=True)
    overhead = {size: statistics.median(values) for size, values in per_unit.items()}
    print(f"datagen: units of {SAMPLES_PER_UNIT} samples ({len(constant_png())}-byte PNG), {SAMPLES_PER_SHARD} samples per "
          f"shard, {ACTORS} actors, median of {repeats}; producer {producer * 1e6:.1f} us/unit (subtracted)")
    for size in sizes:
        print(f"  N={size:>7,}  overhead {overhead[size] * 1e3:7.3f} ms/unit ({overhead[size] / overhead[sizes[0]]:.2f}x)"
              f"   one from-scratch unit_progress of the finished job {fresh[size] * 1e3:8.2f} ms")
    return overhead


def write_stream(stream_dir: Path, shards: int, samples_per_shard: int, writer_id: str = "w0", first_key: int = 0) -> None:
    png = constant_png()
    with ShardWriter(stream_dir, "original", writer_id, "bench", max_samples=samples_per_shard) as writer:
        for index in range(first_key, first_key + shards * samples_per_shard):
            writer.write({"__key__": f"k{index}", "png": png, "cls": index % 10, "json": {"index": index}})


def start_s(stream_dir: Path) -> tuple[float, float, float]:
    """Seconds of ``check_committed_shards`` alone, and wall and CPU seconds (all of this process's
    threads) of a static batch source up to its first batch: on a shared machine the wall time
    also holds the waits for a core."""
    start = time.perf_counter()
    check_committed_shards(stream_dir)
    checks = time.perf_counter() - start
    loader = LoaderConfig(crop_size=8, resize_size=8, num_threads=1)
    start, start_cpu = time.perf_counter(), time.process_time()
    source = build_batch_source("original", stream_dir, StreamConfig(batch_size=8), loader, 0, 1, "cpu", 0, growing=False)
    source.next_batch()
    first_batch, first_batch_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    source.close()
    return checks, first_batch, first_batch_cpu


def follow_s_per_shard(stream_dir: Path, new_shards: int, samples_per_shard: int) -> float:
    """Median seconds of poll + check_shard for one newly committed shard, the follower at the manifest's end."""
    follower = ManifestFollower(stream_dir)
    follower.poll()
    timings, png = [], constant_png()
    with ShardWriter(stream_dir, "original", "w1", "bench", max_samples=samples_per_shard) as writer:
        for shard in range(new_shards):
            for sample in range(samples_per_shard):
                index = 10**9 + shard * samples_per_shard + sample
                writer.write({"__key__": f"k{index}", "png": png, "cls": index % 10, "json": {"index": index}})
            writer.flush()
            start = time.perf_counter()
            records = follower.poll()
            for record in records:
                check_shard(stream_dir / record.name, record)
            timings.append(time.perf_counter() - start)
            assert len(records) == 1
    return statistics.median(timings)


def trainer_part(stream_shards: int, samples_per_shard: int, repeats: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as temporary:
        small, large = Path(temporary) / "small", Path(temporary) / "large"
        started = time.perf_counter()
        write_stream(small, 100, samples_per_shard)
        write_stream(large, stream_shards, samples_per_shard)
        print(f"trainer: wrote streams of 100 and {stream_shards:,} shards x {samples_per_shard} samples "
              f"in {time.perf_counter() - started:.0f} s", flush=True)
        starts = [start_s(large) for _ in range(repeats)]
        follows: dict[str, list[float]] = {"small": [], "large": []}
        for _ in range(repeats):
            for name, stream_dir in (("small", small), ("large", large)):
                follows[name].append(follow_s_per_shard(stream_dir, 20, samples_per_shard))
    checks, first_batch, first_batch_cpu = (statistics.median(values) for values in zip(*starts))
    small_s, large_s = statistics.median(follows["small"]), statistics.median(follows["large"])
    print(f"  start on {stream_shards:,} shards: reader checks {checks:.2f} s, static batch source to its first batch "
          f"{first_batch:.2f} s ({first_batch_cpu:.2f} s CPU) (median of {repeats})")
    print(f"  following one new shard (poll + check_shard): {small_s * 1e3:.3f} ms at 100 shards, "
          f"{large_s * 1e3:.3f} ms at {stream_shards:,} ({large_s / small_s:.2f}x)")
    return first_batch, large_s / small_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N up to 10,000 (else up to 100,000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stream-shards", type=int, default=10_000)
    parser.add_argument("--stream-shard-samples", type=int, default=10)
    args = parser.parse_args()
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    overhead = datagen_part(sizes, args.repeats)
    start, follow_ratio = trainer_part(args.stream_shards, args.stream_shard_samples, args.repeats)
    overhead_ratio = overhead[sizes[-1]] / overhead[sizes[0]]
    print(f"result: overhead_ratio_{sizes[-1]}_vs_{sizes[0]}={overhead_ratio:.2f} "
          f"overhead_goal_met={str(overhead_ratio <= OVERHEAD_GOAL).lower()} "
          f"start_s={start:.2f} start_goal_met={str(start < START_GOAL_S).lower()} "
          f"follow_ratio={follow_ratio:.2f} follow_goal_met={str(follow_ratio <= FOLLOW_GOAL).lower()}")


if __name__ == "__main__":
    main()
