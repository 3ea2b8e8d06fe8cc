"""Fitting the class-conditional VAE: the negative ELBO, the Adam loop, and its data from a shard stream.

The reconstruction term is Bernoulli (binary cross-entropy on pixel intensities in [0, 1]). The
coloured digits are nearly binary per channel (a saturated background colour, a bright stroke), so
the Bernoulli likelihood fits them, its per-image scale (summed over 3*S*S pixels) balances the KL
term without a tuned variance, and its logits keep gradients alive where sigmoid outputs saturate.
A fixed-variance Gaussian (MSE) would need that variance chosen by hand, since it sets the balance
between reconstruction and KL; it was not implemented.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from datagen.errors import DatagenError
from datagen.generators.cvae import ConditionalVae, CvaeGenerator
from datagen.generators.cgn_config import CgnArchitecture
from datagen.generators.cvae_config import CvaeArchitecture, CvaeTrainConfig
from shards.errors import ShardError
from shards.images import read_stream_images


# Where the architecture sits in a job's config (datagen.config.GeneratorConfig.train), for advice.
_ARCHITECTURE = "datagen.generator.train.model"


@dataclass(frozen=True)
class EpochLosses:
    """Means over one epoch's images, in nats per image."""

    epoch: int
    loss: float  # reconstruction + beta * kl
    reconstruction: float
    kl: float


def negative_elbo(
    model: ConditionalVae,
    images: torch.Tensor,
    classes: torch.Tensor,
    beta: float,
    noise: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch means of (reconstruction + beta * KL, reconstruction, KL) per image.

    Args:
        images: (N, 3, S, S) in [0, 1]; classes: (N,) class indices.
        beta: weight of KL(q(z | x, y) || N(0, I)).
        noise: draws the reparameterisation noise, so a seeded run is repeatable.
    """
    mean, log_variance = model.encode(images, classes)
    latents = mean + torch.exp(0.5 * log_variance) * torch.randn(mean.shape, generator=noise)
    logits = model.decode_logits(latents, classes)
    reconstruction = F.binary_cross_entropy_with_logits(logits, images, reduction="none").flatten(1).sum(1).mean()
    kl = (-0.5 * (1 + log_variance - mean.square() - log_variance.exp())).sum(1).mean()
    return reconstruction + beta * kl, reconstruction, kl


def train_cvae(
    images: torch.Tensor,
    labels: torch.Tensor,
    config: CvaeTrainConfig,
    on_progress: Callable[[int, float], None] | None = None,
) -> tuple[CvaeGenerator, list[EpochLosses]]:
    """Fit a ConditionalVae with Adam on CPU; the same seed and data give the same weights.

    Args:
        images: float tensor (N, 3, S, S) in [0, 1] with S = ``config.model.image_size``.
        labels: integer tensor (N,) in [0, ``config.model.num_classes``).
        config: architecture, epochs, batch size, learning rate, beta and seed.
        on_progress: called as ``on_progress(epoch, mean_loss)`` after every epoch (epochs count from 0).

    Returns:
        The trained generator and one EpochLosses per epoch.

    Raises:
        DatagenError: if the images or labels do not fit the configured architecture.
    """
    check_training_data(images, labels, config.model)
    images, labels = images.float(), labels.long()
    # Seed initialisation without disturbing the caller's global RNG; shuffling and noise use their own generator.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = ConditionalVae(config.model)
    rng = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    history = []
    for epoch in range(config.epochs):
        totals = torch.zeros(3)
        for batch in torch.randperm(len(images), generator=rng).split(config.batch_size):
            totals += _train_step(model, optimizer, images[batch], labels[batch], config.beta, rng) * len(batch)
        history.append(EpochLosses(epoch, *(totals / len(images)).tolist()))
        if on_progress is not None:
            on_progress(epoch, history[-1].loss)
    return CvaeGenerator(model), history


def _train_step(
    model: ConditionalVae,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    classes: torch.Tensor,
    beta: float,
    noise: torch.Generator,
) -> torch.Tensor:
    """One Adam step; returns the detached (loss, reconstruction, kl) batch means."""
    loss, reconstruction, kl = negative_elbo(model, images, classes, beta, noise)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return torch.stack([loss, reconstruction, kl]).detach()


def check_training_data(
    images: torch.Tensor,
    labels: torch.Tensor,
    architecture: CvaeArchitecture | CgnArchitecture,
    label: str = "CVAE",
    where: str = _ARCHITECTURE,
) -> None:
    """Raise a one-line DatagenError unless images and labels fit ``architecture``.

    Args:
        label: the generator's name in messages; where: the architecture's dotted config path.
    """
    size = architecture.image_size
    if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size) or len(images) == 0:
        raise DatagenError(
            f"{label} training images must have shape (N>0, 3, {size}, {size}) to match {where}.image_size "
            f"(got {tuple(images.shape)})"
        )
    if not images.is_floating_point() or images.min() < 0 or images.max() > 1:
        raise DatagenError(
            f"{label} training images must be floats in [0, 1] (got {images.dtype}, "
            f"range {float(images.min()):.3g}..{float(images.max()):.3g}); divide uint8 pixels by 255"
        )
    if labels.shape != (len(images),) or labels.is_floating_point():
        raise DatagenError(
            f"{label} training labels must be integers of shape ({len(images)},) (got {labels.dtype} {tuple(labels.shape)})"
        )
    if labels.min() < 0 or labels.max() >= architecture.num_classes:
        raise DatagenError(
            f"{label} training labels must lie in [0, {architecture.num_classes}) "
            f"(got {int(labels.min())}..{int(labels.max())}); raise {where}.num_classes or drop those samples"
        )


def load_stream_images(stream_dir: Path, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every committed sample of a shard stream, decoded to RGB and resized to ``image_size``.

    Args:
        stream_dir: a stream directory written by the shard store (its manifest lists the shards).
        image_size: side of the square images returned, in pixels.

    Returns:
        images: float32 (N, 3, image_size, image_size) in [0, 1]; labels: int64 (N,) from ``cls``.

    Raises:
        DatagenError: one line if the stream has no committed samples, a shard is damaged or
            cannot be read, or a sample's image or label cannot be decoded (naming its shard and key).
    """
    stream_dir = Path(stream_dir)
    if not stream_dir.is_dir():
        raise DatagenError(f"{stream_dir}: training stream directory not found")
    try:
        images, labels = read_stream_images(stream_dir, image_size)
    except ShardError as error:
        raise DatagenError(f"{stream_dir}: cannot read the training stream ({error})") from None
    if not len(labels):
        raise DatagenError(f"{stream_dir}: no committed samples in this stream; write its shards first")
    return torch.from_numpy(images).float() / 255, torch.from_numpy(labels)
