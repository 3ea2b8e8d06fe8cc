"""Training step throughput on one GPU: our DeepSpeed bf16 step against plain PyTorch fp32.

Several paths train the same classifier (ResNet-152, 1000 classes by default) on the same synthetic
batches, one after the other in one process:

- plain fp32: ``torch.optim.SGD`` (momentum, weight decay), cross-entropy, contiguous NCHW;
  the baseline every ratio is against.
- plain bf16: the same under ``torch.autocast(bfloat16)`` with channels_last batches (fp32
  weights), a reference for what bf16 gives without DeepSpeed; once with channels_last weights
  too, once with contiguous weights as our engine keeps them (DeepSpeed cannot take channels_last
  weights, see ``trainers.engine.build_engine``); and once with the model cast to bf16 (batch-norm
  parameters included), as DeepSpeed's bf16 mode does.
- ours: ``trainers.engine.build_engine`` (DeepSpeed, bf16, ZeRO 1, the job's SGD config) and
  ``trainers.step.train_step`` (read, concatenate, forward, Eq. 1, backward, update) on a
  one-process NCCL group, the backend Ray Train gives GPU workers.

The batches are already on the GPU (DALI's ``mixed`` decode hands them over there); every step
reads its loss back, so step times are host times of finished steps. Median step time after
warm-up steps, as images/s.

    python bench/gpu_train_step.py [--model resnet152] [--batch 64] [--image-size 224] [--steps 30]
    python bench/gpu_train_step.py --only-ours [--zero-stage 0] [--deepspeed '{"bf16": {"enabled": false}}'] [--profile FILE]
    DS_ACCELERATOR=cpu python bench/gpu_train_step.py --device cpu --model resnet18 --image-size 32   # smoke run
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from trainers.config import TrainConfig
from trainers.engine import build_engine, local_process_group, memory_format
from trainers.memory_source import MemorySource, colour_classes
from trainers.models import build_model
from trainers.objectives import CrossEntropyMix
from trainers.step import train_step

PLAIN_PATHS = {  # name: (precision, weights' layout); every bf16 path feeds channels_last batches
    "plain fp32": ("fp32", torch.contiguous_format),
    "plain bf16 autocast, channels_last": ("autocast", torch.channels_last),
    "plain bf16 autocast, contiguous weights": ("autocast", torch.contiguous_format),
    "plain bf16 model (BN in bf16), contiguous w.": ("bf16", torch.contiguous_format),
}


def plain_step_times(
    config: TrainConfig, source: MemorySource, device: torch.device, steps: int, precision: str, weights_layout: torch.memory_format
) -> list[float]:
    """Per-step seconds of a plain PyTorch loop with the job's SGD settings."""
    torch.manual_seed(config.seed)
    bf16 = precision != "fp32"
    layout = torch.channels_last if bf16 else torch.contiguous_format
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    model = build_model(config.model, config.num_classes).to(device, dtype, memory_format=weights_layout)
    opt = config.optimizer
    optimizer = torch.optim.SGD(model.parameters(), lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        batch = source.next_batch()
        images = batch.images.to(device, dtype).contiguous(memory_format=layout)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "autocast"):
            loss = torch.nn.functional.cross_entropy(model(images), batch.labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()
        times.append(time.perf_counter() - started)
    return times


def engine_step_times(
    config: TrainConfig, source: MemorySource, device: torch.device, steps: int, profile: Path | None
) -> list[float]:
    """Per-step seconds of our DeepSpeed engine and mixed step (one stream); ``profile``: where to
    write the profiler's top operators over five further steps."""
    engine = build_engine(config, device)
    layout = memory_format(config, device)
    objective = CrossEntropyMix()

    def step(number: int) -> float:
        return train_step(engine, objective, {"original": source}, {"original": 1.0}, number, 0, layout).step_s

    times = [step(number) for number in range(1, steps + 1)]
    if profile:
        activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
        with torch.profiler.profile(activities=activities) as profiler:
            for number in range(steps + 1, steps + 6):
                step(number)
        averages = profiler.key_averages()
        profile.write_text("\n\n".join(averages.table(sort_by=key, row_limit=25) for key in ("self_cuda_time_total", "self_cpu_time_total")))
    engine.destroy()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", default="resnet152")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per path")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN pick convolution algorithms by timing")
    parser.add_argument("--only-ours", action="store_true", help="skip the plain PyTorch paths (diagnostic runs)")
    parser.add_argument("--zero-stage", type=int, default=1, choices=(0, 1))
    parser.add_argument("--deepspeed", default="{}", help="JSON merged over our DeepSpeed config (train.deepspeed)")
    parser.add_argument("--profile", type=Path, help="write the profiler's top operators of our step here")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    config = TrainConfig.model_validate({
        "model": args.model, "num_classes": args.classes,
        "optimizer": {"lr": 0.1, "decay_unit": "steps"},
        "streams": {"original": {"batch_size": args.batch}},
        "zero_stage": args.zero_stage, "deepspeed": json.loads(args.deepspeed),
    })
    images, labels = colour_classes(4 * args.batch, args.classes, args.image_size, seed=0)
    images, labels = images.to(device), labels.to(device)
    total = args.warmup + args.steps

    def source() -> MemorySource:
        return MemorySource("original", images, labels, args.batch)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{args.model}, {args.classes} classes, batch {args.batch} at {args.image_size} px, {name}, "
          f"cudnn.benchmark {args.cudnn_benchmark}, ZeRO {args.zero_stage}, deepspeed {args.deepspeed}, "
          f"median of {args.steps} steps after {args.warmup} warm-up")
    base = None

    def report(path: str, times: list[float]) -> None:
        nonlocal base
        seconds = statistics.median(times[args.warmup:])
        base = base or seconds  # the first path (plain fp32 unless --only-ours) is the baseline
        print(f"  {path:46s} {seconds * 1000:8.1f} ms/step {args.batch / seconds:8.1f} images/s   ratio {base / seconds:5.2f}", flush=True)

    for path, (precision, weights) in () if args.only_ours else PLAIN_PATHS.items():
        report(path, plain_step_times(config, source(), device, total, precision, weights))
    with local_process_group("nccl" if device.type == "cuda" else "gloo"):
        report("ours: DeepSpeed engine + train_step", engine_step_times(config, source(), device, total, args.profile))
    if device.type == "cuda":
        print(f"  peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")


if __name__ == "__main__":
    main()
