"""BigGAN-deep-256 generation on a GPU: precision and memory format, and the intervention's overhead.

1. images/s of ``BigGANGenerator.generate`` (latents in, float images in [0, 1] on the host out)
   for fp32 and bf16, each contiguous and channels_last, at each batch size; ratios against fp32
   contiguous measured in the same run. Variants alternate within each repeat; medians reported.
   bf16 images are compared with fp32 ones (mean |difference| in [0, 1] pixels).
2. images/s of ``UnitProducer`` (latents from seeds, edit, generate, JPEG encode) with an
   intervention strategy against observational sampling, in the generator's configured precision.

The model is the full BigGAN-deep-256 architecture (55.9 M parameters) with random weights, so
nothing is downloaded: speed only, the images are not meaningful.

    python bench/gpu_generation.py [--batch-sizes 32 64] [--batches 10] [--repeats 3] [--compile] [--no-producer]
    python bench/gpu_generation.py --device cpu --tiny   # a smoke run of the script on a CPU
"""

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
from pytorch_pretrained_biggan import BigGANConfig

from datagen.directions import DirectionsConfig, compute_directions
from datagen.generators.biggan import BigGANGenerator, random_biggan, tiny_biggan_config
from datagen.produce import UnitProducer
from datagen.strategies import StrategyConfig
from datagen.units import WorkUnit

# BigGAN-deep-256 as published (config.json of the pretrained model): two blocks per resolution
# from 4x4 up to 256x256, self-attention at 64x64.
BIGGAN_DEEP_256 = {
    "output_dim": 256, "z_dim": 128, "class_embed_dim": 128, "channel_width": 128, "num_classes": 1000,
    "layers": [(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8), (True, 8, 8),
               (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1)],
    "attention_layer_position": 8, "eps": 1e-4, "n_stats": 51,
}
VARIANTS = (("fp32", torch.contiguous_format), ("fp32", torch.channels_last),
            ("bf16", torch.contiguous_format), ("bf16", torch.channels_last))


def variant_name(precision: str, memory_format: torch.memory_format) -> str:
    return f"{precision} {'channels_last' if memory_format == torch.channels_last else 'contiguous'}"


def make_generator(model, device: torch.device, precision: str, memory_format: torch.memory_format) -> BigGANGenerator:
    # BigGANGenerator moves the model in place (bf16, channels_last on CUDA): give each variant its own copy.
    generator = BigGANGenerator(copy.deepcopy(model), "bench", device, precision)
    generator.model.to(memory_format=memory_format)
    return generator


def inputs(generator: BigGANGenerator, batch: int, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    latents = generator.sample_latents(range(offset, offset + batch), truncation=1.0)
    return latents, torch.arange(offset, offset + batch) % generator.num_classes


def generate_rate(generator: BigGANGenerator, batch: int, batches: int) -> float:
    """images/s over ``batches`` calls; latents are drawn beforehand (that is the producer's cost)."""
    prepared = [inputs(generator, batch, index * batch) for index in range(batches)]
    started = time.perf_counter()
    for latents, classes in prepared:
        generator.generate(latents, classes, 1.0)  # returns host tensors: the device has finished
    return batch * batches / (time.perf_counter() - started)


def precision_table(model, device: torch.device, batch_sizes: list[int], batches: int, repeats: int, compile_: bool) -> None:
    generators = {variant_name(*variant): make_generator(model, device, *variant) for variant in VARIANTS}
    if compile_:
        # An experiment, not our path: how much kernel fusion would give over eager bf16.
        compiled = make_generator(model, device, "bf16", torch.channels_last)
        compiled.model = torch.compile(compiled.model)
        generators["bf16 channels_last compiled"] = compiled
    reference = generators["fp32 contiguous"]
    for batch in batch_sizes:
        latents, classes = inputs(reference, batch, 0)
        fp32_images = reference.generate(latents, classes, 1.0)
        differences = {}
        for name, generator in generators.items():
            images = generator.generate(latents, classes, 1.0)  # also the warm-up (cuDNN autotuning, allocator)
            if not torch.isfinite(images).all():
                raise SystemExit(f"{name}: non-finite pixels at batch {batch}")
            differences[name] = (images - fp32_images).abs().mean().item()
        rates = {name: [] for name in generators}
        for _ in range(repeats):
            for name, generator in generators.items():
                rates[name].append(generate_rate(generator, batch, batches))
        base = statistics.median(rates["fp32 contiguous"])
        print(f"generate, batch {batch}, {batches} batches x {repeats} repeats (median); pixel std of fp32 images {fp32_images.std():.3f}")
        for name, runs in rates.items():
            rate = statistics.median(runs)
            print(f"  {name:28s} {rate:8.1f} images/s   ratio {rate / base:5.2f}   mean |image - fp32| {differences[name]:.4f}")


def producer_rate(producer: UnitProducer, unit: WorkUnit) -> float:
    started = time.perf_counter()
    count = sum(1 for _ in producer.samples(unit))
    return count / (time.perf_counter() - started)


def intervention_overhead(generator: BigGANGenerator, batch: int, images: int, repeats: int, state: Path) -> None:
    directions = compute_directions(
        generator, DirectionsConfig(samples=512, components=8, batch_size=256, regression_samples=512), state
    )
    seeds = images // 4
    intervened = StrategyConfig(kind="intervention", truncation=1.0, top_k=8, components_per_seed=4,
                                seeds_per_class=seeds, ranges="spread")
    observed = StrategyConfig(kind="observational", truncation=1.0, seeds_per_class=images)
    cases = (("plain", observed, WorkUnit(0, 0, images)), ("intervened", intervened, WorkUnit(0, 0, seeds)))
    producer_rate(UnitProducer(generator, observed, directions, 0, "bench", batch_size=batch), WorkUnit(0, 0, batch))
    runs = {name: [] for name, _, _ in cases}
    for _ in range(repeats):
        for name, strategy, unit in cases:
            runs[name].append(producer_rate(UnitProducer(generator, strategy, directions, 0, "bench", batch_size=batch), unit))
    plain, edited = statistics.median(runs["plain"]), statistics.median(runs["intervened"])
    print(f"UnitProducer ({generator.dtype}, batch {batch}, {images} images incl. latents and JPEG encoding, median of {repeats}):")
    print(f"  plain sampling   {plain:8.1f} images/s")
    print(f"  intervention     {edited:8.1f} images/s   ratio {edited / plain:.3f} (goal >= 0.95)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--batches", type=int, default=10, help="timed generate calls per variant and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--producer-images", type=int, default=512)
    parser.add_argument("--tiny", action="store_true", help="a reduced-width 32 px model (smoke runs on a CPU)")
    parser.add_argument("--compile", action="store_true", help="also time bf16 channels_last under torch.compile")
    parser.add_argument("--no-producer", action="store_true", help="skip the UnitProducer comparison")
    args = parser.parse_args()
    device = torch.device(args.device)
    config = tiny_biggan_config(num_classes=10) if args.tiny else BigGANConfig(**BIGGAN_DEEP_256)
    torch.backends.cudnn.benchmark = True
    started = time.perf_counter()
    model = random_biggan(config, device=device)
    print(f"random BigGAN-deep {config.output_dim} px, {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, "
          f"built on {device} in {time.perf_counter() - started:.1f} s")
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    precision_table(model, device, args.batch_sizes, args.batches, args.repeats, args.compile)
    if args.no_producer:
        return
    with tempfile.TemporaryDirectory() as directory:
        generator = BigGANGenerator(model, "bench", device, "bf16")
        intervention_overhead(generator, max(args.batch_sizes), args.producer_images, args.repeats, Path(directory) / "state.npz")


if __name__ == "__main__":
    main()
