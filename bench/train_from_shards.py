"""Steps/s of the worker loop reading two streams from shards through DALI, against the same loop
fed the same decoded tensors from memory.

Both sides run the real worker loop (``trainers.loop.run_worker``: ``trainers.step.train_step`` on
a DeepSpeed engine, losses read back at report steps) with the same model, seed and batch. The
shard-fed side reads a static stream (``original``: DALI's webdataset reader decoding in its graph)
and a growing one (``interventional``: read in Python, decoded by a DALI stage fed ahead) from
WebDataset shards written by the real ShardWriter. The baseline reads, through ``MemorySource``,
tensors those same sources decoded before the timing. Runs alternate (shards, memory, shards, ...)
and each side's figure is the median step time over its runs' timed steps; the data-wait share
is the shard-fed steps' time in ``next_batch`` over their step time. The decode time of a step's
batches (the sources alone, nothing training) is measured too, to show the step is at least
``3x`` it. Goal (issue 14): ratio >= 0.95 and data-wait share < 5 %.

    DS_ACCELERATOR=cpu .venv/bin/python bench/train_from_shards.py [--model resnet18] [--image-size 256]
        [--crop-size 64] [--batch 32] [--side-batch 16] [--steps 12] [--runs 3] [--threads 1] [--device cpu]

``--device cuda`` decodes with DALI's ``mixed`` decoder and trains on the GPU (NCCL group).
"""

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from shards.writer import ShardWriter
from trainers.callbacks import WorkerReport
from trainers.config import TrainConfig
from trainers.data.config import LoaderConfig
from trainers.engine import local_process_group
from trainers.loop import run_worker
from trainers.memory_source import MemorySourceFactory
from trainers.shard_sources import ShardSourceFactory

CLASSES = 10
STATIC, GROWING = "original", "interventional"


def write_stream(stream_dir: Path, stream: str, images: int, image_size: int, seed: int) -> None:
    """Photo-like JPEGs (smooth gradients plus noise, quality 90), 64 per shard."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, image_size)
    with ShardWriter(stream_dir, stream, "w0", "bench", max_samples=64) as writer:
        for index in range(images):
            base = np.outer(ramp, ramp[::-1])[..., None] * rng.random(3) * 255
            pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
            writer.write({"__key__": f"{stream}{index:06d}", "jpg": buffer.getvalue(), "cls": index % CLASSES, "json": {}})


def decoded_streams(factory: ShardSourceFactory, config: TrainConfig, device: torch.device,
                    batches: int) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], float]:
    """``batches`` batches of every stream decoded through the shard sources, and the median
    seconds the sources take to hand out one step's batches with nothing else running. Built with
    a prefetch depth of 1, so that time is the whole decode of the step's batches, one stream after
    the other: what a step would wait without the overlap."""
    sources = {name: factory(name, stream, 0, 1, device) for name, stream in config.active_streams.items()}
    data: dict[str, list] = {name: [] for name in sources}
    times = []
    try:
        for _ in range(batches):
            started = time.perf_counter()
            step = {name: source.next_batch() for name, source in sources.items()}
            times.append(time.perf_counter() - started)
            for name, batch in step.items():
                data[name].append(batch)
    finally:
        for source in sources.values():
            source.close()
    tensors = {name: (torch.cat([b.images for b in got]), torch.cat([b.labels for b in got])) for name, got in data.items()}
    return tensors, statistics.median(times[1:])  # the first includes the pipelines' start


def timed_run(config: TrainConfig, factory, device: torch.device, warmup: int) -> list:
    """One run of the worker loop from a fresh engine; the step reports after ``warmup`` steps."""
    reports: list[WorkerReport] = []
    with tempfile.TemporaryDirectory() as checkpoints:
        run_worker(config, factory, Path(checkpoints), device, reports.append)
    return [step for report in reports for step in report.steps][warmup:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=256, help="side of the JPEGs in the shards, px")
    parser.add_argument("--crop-size", type=int, default=64, help="training crop, px")
    parser.add_argument("--batch", type=int, default=32, help="batch of the static stream")
    parser.add_argument("--side-batch", type=int, default=16, help="batch of the growing stream")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of each run")
    parser.add_argument("--runs", type=int, default=3, help="runs of each side, alternating")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the other core decodes)")
    parser.add_argument("--dali-threads", type=int, default=1, help="DALI threads per stream")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: DALI mixed decode, NCCL")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda:0" if args.device == "cuda" else "cpu")
    loader = LoaderConfig(crop_size=args.crop_size, resize_size=args.crop_size, num_threads=args.dali_threads,
                          shuffle_buffer=256)
    steps = args.warmup + args.steps
    config = TrainConfig.model_validate({
        "model": args.model, "num_classes": CLASSES, "max_steps": steps, "checkpoint_every_steps": steps,
        "report_every_steps": 10, "data": loader.model_dump(),
        "optimizer": {"lr": 0.01, "decay_unit": "steps", "decay_every": 1000},
        "streams": {STATIC: {"batch_size": args.batch}, GROWING: {"batch_size": args.side_batch, "loss_weight": 0.2}},
    })
    with tempfile.TemporaryDirectory() as temp, local_process_group("nccl" if args.device == "cuda" else "gloo"):
        store = Path(temp)
        # Enough for every run to read its own samples: nothing repeats inside a growing stream's run.
        write_stream(store / STATIC, STATIC, 4 * 64, args.image_size, seed=0)
        write_stream(store / GROWING, GROWING, (steps + 1) * args.side_batch, args.image_size, seed=1)
        shards = ShardSourceFactory(store, loader, seed=0, growing=frozenset({GROWING}))
        on_demand = ShardSourceFactory(store, loader.model_copy(update={"prefetch_queue_depth": 1}), seed=0,
                                       growing=frozenset({GROWING}))
        tensors, decode_s = decoded_streams(on_demand, config, device, batches=steps)
        memory = MemorySourceFactory(tensors)
        from_shards, from_memory = [], []
        for _ in range(args.runs):
            from_shards += timed_run(config, shards, device, args.warmup)
            from_memory += timed_run(config, memory, device, args.warmup)
    # Medians: a step that lands on a burst of other load (a shared CPU) should not decide the ratio.
    shard_step_s = statistics.median(report.step_s for report in from_shards)
    memory_step_s = statistics.median(report.step_s for report in from_memory)
    wait_share = sum(report.data_wait_s for report in from_shards) / sum(report.step_s for report in from_shards)
    ratio = memory_step_s / shard_step_s
    step_over_decode = memory_step_s / decode_s
    print(f"model {args.model}, crop {args.crop_size} px from {args.image_size} px JPEGs, batch {args.batch} + "
          f"{args.side_batch}, device {args.device}, torch threads {args.threads}, DALI threads {args.dali_threads}/stream, "
          f"{args.runs} x {args.steps} timed steps per side")
    print(f"decode of one step's batches (sources alone, no prefetch): {decode_s * 1e3:8.1f} ms "
          f"(a share of {decode_s / (memory_step_s + decode_s) * 100:.1f} % of the step if it were not overlapped)")
    print(f"step fed from memory (median):  {memory_step_s * 1e3:8.1f} ms ({step_over_decode:.1f}x the decode)")
    print(f"step fed from shards (median):  {shard_step_s * 1e3:8.1f} ms")
    print(f"data-wait share, shard-fed:     {wait_share * 100:8.2f} %")
    goal_met = ratio >= 0.95 and wait_share < 0.05
    print(f"result: ratio={ratio:.3f} data_wait_share={wait_share:.4f} step_over_decode={step_over_decode:.1f} "
          f"steps_per_s_shards={1 / shard_step_s:.3f} steps_per_s_memory={1 / memory_step_s:.3f} "
          f"device={args.device} goal_met={str(goal_met).lower()}")


if __name__ == "__main__":
    main()
