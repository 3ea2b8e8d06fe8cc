"""Batched Gatys style transfer against the one-image-at-a-time torch.optim.LBFGS loop.

Both run the same pairs with the same per-pair step counts (drawn as the stage draws them), the
same image size and the same VGG-19 (random weights: no download; the arithmetic is the same as
with the ImageNet weights). Prints images/s of each, the ratio, and how far the results differ.

    .venv/bin/python bench/transfer.py [--pairs 8] [--size 64] [--repeats 3] [--threads N] [--channels-last] [--device cuda]
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torchvision.models import vgg19

from datagen.transfer.config import TransferConfig
from datagen.transfer.gatys import transfer_batch
from datagen.transfer.reference import transfer_with_torch_lbfgs
from datagen.transfer.samples import draw_steps
from datagen.transfer.vgg import VggFeatures, load_vgg_features


def smooth_images(count: int, size: int, seed: int) -> torch.Tensor:
    noise = torch.rand(count, 3, size // 8, size // 8, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(noise, size=size, mode="bilinear", align_corners=False)


def timed(run):
    """Wrap ``run`` to return (wall seconds, CPU seconds of this process, result on the host)."""

    def wrapper(*args):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run(*args).cpu()  # waits for the device's queued work
        return time.perf_counter() - wall, time.process_time() - cpu, result

    return wrapper


@timed
def run_batched(content, style, steps, features: VggFeatures, config: TransferConfig) -> torch.Tensor:
    outputs = [
        transfer_batch(content[first : first + config.batch_size], style[first : first + config.batch_size],
                       steps[first : first + config.batch_size], features, config)
        for first in range(0, len(steps), config.batch_size)
    ]
    return torch.cat(outputs)


@timed
def run_one_at_a_time(content, style, steps, features: VggFeatures, config: TransferConfig) -> torch.Tensor:
    outputs = [
        transfer_with_torch_lbfgs(content[index : index + 1], style[index : index + 1], count, features, config)[0]
        for index, count in enumerate(steps)
    ]
    return torch.stack(outputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--min-steps", type=int, default=20)
    parser.add_argument("--max-steps", type=int, default=70)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each path; the median is reported")
    parser.add_argument("--channels-last", action="store_true", help="run VGG in channels_last memory format")
    parser.add_argument("--device", default="cpu", help="where VGG and both optimisers run (cpu, cuda)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as directory:
        torch.manual_seed(0)
        weights = Path(directory) / "vgg19_features.pt"
        torch.save(vgg19().features.state_dict(), weights)
        config = TransferConfig(
            vgg_weights=str(weights), optimise_size=args.size, batch_size=args.batch_size,
            min_steps=args.min_steps, max_steps=args.max_steps,
        )
        features = load_vgg_features(config.vgg_weights, [*config.style_layers, *config.content_layers], torch.device(args.device))
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    features = features.to(memory_format=memory_format)
    content = smooth_images(args.pairs, args.size, seed=1).to(args.device).contiguous(memory_format=memory_format)
    style = smooth_images(args.pairs, args.size, seed=2).to(args.device).contiguous(memory_format=memory_format)
    steps = [draw_steps(f"content{index}", f"style{index}", config) for index in range(args.pairs)]

    # Warm-up (allocator, oneDNN primitive caches) on a short run of both paths.
    run_batched(content[:2], style[:2], [2, 2], features, config)
    run_one_at_a_time(content[:1], style[:1], [2], features, config)
    # Alternate the two paths and keep each one's median: on a shared machine a burst of someone
    # else's work lands on one run, not on one path.
    one_runs, batched_runs = [], []
    for _ in range(args.repeats):
        one_runs.append(run_one_at_a_time(content, style, steps, features, config))
        batched_runs.append(run_batched(content, style, steps, features, config))
    one_s, one_cpu_s, one_images = sorted(one_runs, key=lambda run: run[0])[len(one_runs) // 2]
    batched_s, batched_cpu_s, batched_images = sorted(batched_runs, key=lambda run: run[0])[len(batched_runs) // 2]

    print(f"{args.pairs} pairs at {args.size} px, steps {steps} (sum {sum(steps)}), batch {config.batch_size}, "
          f"{args.device}, threads {torch.get_num_threads()}, {'channels_last' if args.channels_last else 'contiguous'}, "
          f"median of {args.repeats}")
    print(f"one at a time wall s per run: {[round(run[0], 1) for run in one_runs]}, batched: {[round(run[0], 1) for run in batched_runs]}")
    # CPU seconds of this process are printed too: on a shared machine wall time also counts waiting.
    print(f"one at a time (torch.optim.LBFGS): {args.pairs / one_s:.3f} images/s ({one_s:.1f} s wall, {one_cpu_s:.1f} s CPU)")
    print(f"batched (BatchedLBFGS):            {args.pairs / batched_s:.3f} images/s ({batched_s:.1f} s wall, {batched_cpu_s:.1f} s CPU)")
    print(f"ratio batched / one at a time:     {one_s / batched_s:.2f} wall, {one_cpu_s / batched_cpu_s:.2f} CPU")
    best_one, best_batched = min(run[0] for run in one_runs), min(run[0] for run in batched_runs)
    print(f"best runs: one at a time {args.pairs / best_one:.3f} images/s, batched {args.pairs / best_batched:.3f} "
          f"images/s, ratio {best_one / best_batched:.2f}")
    print(f"max |batched - one at a time| pixel difference: {(batched_images - one_images).abs().max():.2e}")


if __name__ == "__main__":
    main()
