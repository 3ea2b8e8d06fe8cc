"""Generation throughput: the intervention's overhead over plain sampling, and 1 vs 2 actors.

1. Intervention overhead: images/s of UnitProducer with the paper strategy (sample, edit along a
   direction, generate, encode) against observational sampling on the same generator, same
   run, alternating repeats, medians reported. Goal: ratio >= 0.95.
2. Actor scaling: images/s of the whole actor pool (Ray, shard writing included) with 1 and with
   2 actors of the same generator on this machine.
A random-initialised BigGAN-deep of reduced width stands in for the real one (speed only).

    python bench/generation.py [--image-size 64] [--width 16] [--images 256] [--repeats 3]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import ray
import torch

from cluster.generation import run_pool
from datagen.config import DatagenConfig
from datagen.directions import DirectionsConfig, compute_directions
from datagen.generators.biggan import (
    BigGANGenerator,
    load_biggan,
    random_biggan,
    tiny_biggan_config,
)
from datagen.produce import UnitProducer
from datagen.service import plan_generation, start_pool
from datagen.strategies import StrategyConfig
from datagen.units import WorkUnit
from shards.config import StoreRef


def images_per_second(producer: UnitProducer, unit: WorkUnit) -> float:
    started = time.perf_counter()
    count = sum(1 for _ in producer.samples(unit))
    return count / (time.perf_counter() - started)


def intervention_overhead(generator, directions, images: int, repeats: int) -> tuple[float, float]:
    seeds = images // 4
    intervened = StrategyConfig(kind="intervention", truncation=1.0, top_k=8, components_per_seed=4, seeds_per_class=seeds, ranges="spread")
    observed = StrategyConfig(kind="observational", truncation=1.0, seeds_per_class=images)
    runs = {"plain": [], "intervened": []}
    for _ in range(repeats):
        for name, strategy, unit in (("plain", observed, WorkUnit(0, 0, images)), ("intervened", intervened, WorkUnit(0, 0, seeds))):
            producer = UnitProducer(generator, strategy, directions, 0, "bench", batch_size=32)
            runs[name].append(images_per_second(producer, unit))
    return statistics.median(runs["plain"]), statistics.median(runs["intervened"])


def pool_rate(root: Path, weights: Path, directions: Path, actors: int, images: int) -> float:
    config = DatagenConfig(
        actors=actors, device="cpu", generator={"weights": str(weights)}, directions={"path": str(directions)},
        strategy={"kind": "intervention", "truncation": 1.0, "top_k": 8, "components_per_seed": 4,
                  "seeds_per_class": images // 4, "ranges": "spread"},
        classes=[0], seeds_per_unit=4, batch_size=16,
    )
    settings, units = plan_generation(config, root, StoreRef(root / f"store-{actors}", 256, 10**9, "bench"))
    # Steady state: count from the moment every actor has finished a unit (start-up excluded).
    reported, counted, window = set(), [0], []

    def on_event(event) -> None:
        if event.kind != "unit":
            return
        if len(reported) == actors:
            counted[0] += event.images
            window.append(time.perf_counter())
        reported.add(event.writer_id)
        if len(reported) == actors and not window:
            window.append(time.perf_counter())

    run_pool(start_pool(settings, units, on_event=on_event))
    return counted[0] / (window[-1] - window[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=16, help="BigGAN channel width (the real model: 128)")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core per actor, like the pool; the overhead ratio is per core
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        model = random_biggan(tiny_biggan_config(num_classes=10, image_size=args.image_size, z_dim=128, channel_width=args.width))
        BigGANGenerator(model, "bench", torch.device("cpu")).save(root / "weights")
        generator = load_biggan(str(root / "weights"), torch.device("cpu"))
        directions = compute_directions(generator, DirectionsConfig(samples=512, components=8, batch_size=256, regression_samples=512), root / "state.npz")
        directions.save(root / "directions.npz")

        plain, intervened = intervention_overhead(generator, directions, args.images, args.repeats)
        print(f"intervention overhead ({args.image_size} px, width {args.width}, {args.images} images, median of {args.repeats}):")
        print(f"  plain sampling   {plain:8.1f} images/s")
        print(f"  paper strategy   {intervened:8.1f} images/s   ratio {intervened / plain:.3f} (goal >= 0.95)")

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            one = pool_rate(root, root / "weights", root / "directions.npz", 1, args.images * 4)
            two = pool_rate(root, root / "weights", root / "directions.npz", 2, args.images * 4)
        finally:
            ray.shutdown()
        print(f"actor scaling ({args.images * 4} images, shards written, steady state after start-up):")
        print(f"  1 actor          {one:8.1f} images/s")
        print(f"  2 actors         {two:8.1f} images/s   ratio {two / one:.2f}")


if __name__ == "__main__":
    main()
