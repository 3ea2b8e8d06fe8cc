"""A gradient-supervision step against a plain step of the same batch of pairs, in one run.

Both use the real step (``trainers.step.train_step``) on one in-process DeepSpeed engine over the same
in-memory paired batches (samples and partners, 2 x --pairs rows): the plain step is Eq. 1 over those rows;
the GS step adds seed 002's L_GS (a second forward of the paired rows, the input gradient with
``create_graph``, and its double backward). Steps alternate plain / GS so load from other jobs hits both
alike; median step times are reported. The seed expects two extra backward passes; goal (issue 16): < 3.5x.

    DS_ACCELERATOR=cpu python bench/gradient_supervision.py [--model small_cnn] [--image-size 32] [--pairs 48] [--steps 20]
"""

import argparse
import json
import statistics

import torch

from trainers.config import TrainConfig
from trainers.engine import build_engine, local_process_group
from trainers.memory_source import MemorySource, colour_classes
from trainers.objectives import CrossEntropyMix, GradientSupervision
from trainers.step import train_step

CLASSES = 10


def paired_source(pairs: int, image_size: int) -> MemorySource:
    """Colour-class images, each paired with its neighbour relabelled to another class (the timing does not
    depend on what the pairs mean)."""
    images, labels = colour_classes(4 * pairs, CLASSES, image_size, seed=0)
    partners = (torch.roll(images, 1, dims=0), (labels + 1) % CLASSES)
    return MemorySource("pairs", images, labels, pairs, seed=1, partners=partners)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--pairs", type=int, default=48, help="pairs per step (2x rows)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier on a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = TrainConfig.model_validate({
        "model": args.model, "num_classes": CLASSES, "optimizer": {"lr": 0.01, "decay_unit": "steps"},
        "streams": {"pairs": {"batch_size": args.pairs, "pairs": True}}, "objective": {"name": "gradient_supervision"},
    })
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    objectives = {"plain": CrossEntropyMix(), "gs": GradientSupervision(weight=1.0)}
    with local_process_group():
        engine = build_engine(config, device)  # one engine: same weights, optimiser and memory for both
        sources = {name: paired_source(args.pairs, args.image_size) for name in objectives}  # same seed: same batches
        times: dict[str, list[float]] = {name: [] for name in objectives}
        for round_ in range(args.warmup + args.steps):
            for name, objective in objectives.items():
                report = train_step(engine, objective, {"pairs": sources[name]}, {"pairs": 1.0}, round_ + 1, rank=0)
                if round_ >= args.warmup:
                    times[name].append(report.step_s)
    plain, gs = (statistics.median(times[name]) for name in ("plain", "gs"))
    print(json.dumps({"device": device.type, "threads": args.threads, "model": args.model, "image_size": args.image_size,
                      "pairs": args.pairs, "rows": 2 * args.pairs, "plain_step_s": round(plain, 4), "gs_step_s": round(gs, 4)}, indent=2))
    print(f"result: gs_over_plain={gs / plain:.2f} plain_step_s={plain:.4f} gs_step_s={gs:.4f} model={args.model}")


if __name__ == "__main__":
    main()
