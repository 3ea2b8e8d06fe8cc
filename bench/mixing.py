"""Steps/s of a 3-stream mixed step against a 1-stream step of the same total batch, in one run.

Both use the real step (``trainers.step.train_step``: read every stream, concatenate, one forward,
Eq. 1, DeepSpeed backward and update) on one in-process DeepSpeed engine, fed by in-memory
sources, so the difference is the cost of mixing itself. Steps alternate (1-stream, 3-stream,
...) and the median step time of each is reported, with the data-wait share of step time
(the in-memory loader always keeps up).

    DS_ACCELERATOR=cpu python bench/mixing.py [--model resnet18] [--image-size 32] [--batch 96] [--steps 30] [--threads 1]
"""

import argparse
import json
import statistics

import torch

from trainers.config import TrainConfig
from trainers.engine import build_engine, local_process_group
from trainers.memory_source import MemorySource, colour_classes
from trainers.objectives import CrossEntropyMix
from trainers.step import train_step

CLASSES = 10


def stream_mix(batch: int, streams: int) -> dict[str, int]:
    """``batch`` split as the paper's 256/64/64 proportions (3 streams) or whole (1 stream)."""
    if streams == 1:
        return {"original": batch}
    side = batch // 6
    return {"original": batch - 2 * side, "interventional": side, "transferred": side}


def make_sources(mix: dict[str, int], image_size: int) -> dict[str, MemorySource]:
    return {
        name: MemorySource(name, *colour_classes(4 * size, CLASSES, image_size, seed), size, seed=seed)
        for seed, (name, size) in enumerate(mix.items())
    }


def interleaved(engine, mixes: dict[int, dict[str, int]], image_size: int, steps: int, warmup: int) -> dict[int, list]:
    """Alternate one step of each mix, ``steps`` times after ``warmup`` rounds; each mix's reports.

    Alternating step by step keeps drift in machine load (a shared CPU) out of the ratio.
    """
    sources = {streams: make_sources(mix, image_size) for streams, mix in mixes.items()}
    objective = CrossEntropyMix()
    reports: dict[int, list] = {streams: [] for streams in mixes}
    for round_ in range(warmup + steps):
        for streams, mix in mixes.items():
            weights = {name: 1.0 if name == "original" else 0.2 for name in mix}
            report = train_step(engine, objective, sources[streams], weights, round_ + 1, rank=0)
            if round_ >= warmup:
                reports[streams].append(report)
    return reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=96, help="total samples per step")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier on a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = TrainConfig.model_validate({
        "model": args.model, "num_classes": CLASSES,
        "optimizer": {"lr": 0.01, "decay_unit": "steps"},
        "streams": {"original": {"batch_size": args.batch}},
    })
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with local_process_group():
        # One engine for both: the same weights, optimiser and memory, only the batch's makeup differs.
        engine = build_engine(config, device)
        mixes = {streams: stream_mix(args.batch, streams) for streams in (1, 3)}
        reports = interleaved(engine, mixes, args.image_size, args.steps, args.warmup)
    # Medians: a step that lands on a burst of other load should not decide the ratio.
    one = 1.0 / statistics.median(r.step_s for r in reports[1])
    three = 1.0 / statistics.median(r.step_s for r in reports[3])
    wait_share = sum(r.data_wait_s for r in reports[3]) / sum(r.step_s for r in reports[3])
    summary = {
        "device": device.type, "threads": args.threads, "model": args.model, "image_size": args.image_size, "batch": args.batch,
        "mix_3": stream_mix(args.batch, 3),
        "steps_per_s_1_stream": round(one, 3), "steps_per_s_3_streams": round(three, 3),
        "images_per_s_3_streams": round(three * args.batch, 1),
        "ratio_3_over_1": round(three / one, 3), "data_wait_share_3_streams": round(wait_share, 4),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
