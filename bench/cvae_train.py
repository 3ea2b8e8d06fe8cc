"""CVAE training and generation throughput on coloured digits, against baselines measured in the same run.

Training: images/s of ``train_cvae`` (in-memory tensors, one randperm per epoch, slices per step)
against the textbook loop over ``DataLoader(TensorDataset(...), shuffle=True)`` with the same model,
loss, optimiser and batch size. Generation: images/s of ``CvaeGenerator.generate`` on batches
against one call per image (what a per-sample actor loop would do). Also prints how often samples
drawn from the prior are nearest to their own class's mean training image.

    python bench/cvae_train.py [--images 1797] [--image-size 32] [--hidden 1000] [--epochs 3] [--threads N]
"""

import argparse
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from datagen.generators.cvae import ConditionalVae, CvaeGenerator
from datagen.generators.cvae_config import CvaeArchitecture, CvaeTrainConfig
from datagen.generators.cvae_training import negative_elbo, train_cvae
from experiments.colored_digits.painter import coloured_digits


def dataloader_baseline(images: torch.Tensor, labels: torch.Tensor, config: CvaeTrainConfig) -> float:
    """Seconds to train the same model with a DataLoader over a TensorDataset."""
    torch.manual_seed(config.seed)
    model = ConditionalVae(config.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    noise = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(TensorDataset(images, labels), batch_size=config.batch_size, shuffle=True)
    start = time.perf_counter()
    for _ in range(config.epochs):
        for batch_images, batch_labels in loader:
            loss, _, _ = negative_elbo(model, batch_images, batch_labels, config.beta, noise)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


def generation_seconds(generator: CvaeGenerator, count: int, batch_size: int) -> float:
    latents = generator.sample_latents(range(count), truncation=1.0)
    classes = torch.arange(count) % generator.num_classes
    start = time.perf_counter()
    for first in range(0, count, batch_size):
        generator.generate(latents[first : first + batch_size], classes[first : first + batch_size], truncation=1.0)
    return time.perf_counter() - start


def class_match(generator: CvaeGenerator, images: torch.Tensor, labels: torch.Tensor, per_class: int = 50) -> tuple[float, int]:
    """(share of prior samples nearest their own class mean, classes where that share exceeds half)."""
    means = torch.stack([images[labels == label].mean(0) for label in range(generator.num_classes)]).flatten(1)
    latents = generator.sample_latents(range(per_class), truncation=1.0)
    shares = []
    for label in range(generator.num_classes):
        generated = generator.generate(latents, torch.full((per_class,), label), truncation=1.0).flatten(1)
        shares.append((torch.cdist(generated, means).argmin(1) == label).float().mean().item())
    return sum(shares) / len(shares), sum(share > 0.5 for share in shares)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1797)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--generate", type=int, default=2048, help="images generated per generation measurement")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    images, labels = coloured_digits(args.image_size, count=args.images)
    config = CvaeTrainConfig(
        model=CvaeArchitecture(image_size=args.image_size, hidden_dim=args.hidden),
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
    )
    print(f"{len(images)} images {args.image_size}px, hidden {args.hidden}, {args.epochs} epochs, "
          f"batch {args.batch_size}, lr {args.learning_rate}, {args.threads} torch threads")

    baseline_s = dataloader_baseline(images, labels, config)
    start = time.perf_counter()
    generator, history = train_cvae(images, labels, config)
    ours_s = time.perf_counter() - start
    trained = len(images) * args.epochs
    print(f"train: DataLoader baseline {trained / baseline_s:.0f} images/s, train_cvae {trained / ours_s:.0f} images/s, "
          f"ratio {baseline_s / ours_s:.2f} ({ours_s:.1f} s); loss {history[0].loss:.0f} -> {history[-1].loss:.0f}")

    one_s = generation_seconds(generator, args.generate, batch_size=1)
    batched_s = generation_seconds(generator, args.generate, batch_size=256)
    print(f"generate: one per call {args.generate / one_s:.0f} images/s, batches of 256 "
          f"{args.generate / batched_s:.0f} images/s, ratio {one_s / batched_s:.1f}")

    share, classes = class_match(generator, images, labels)
    print(f"prior samples nearest their own class mean: {share:.2f} ({classes}/{generator.num_classes} classes above half)")


if __name__ == "__main__":
    main()
