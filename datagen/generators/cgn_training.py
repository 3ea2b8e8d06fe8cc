"""Fitting the CGN: LSGAN against a class-conditional discriminator (MLP or conv) plus the mask and texture losses.

The generator is trained observationally (all three mechanisms get the same class), as the authors
do; counterfactuals only appear at sampling time. One step: the generator's loss on a fresh batch of
composites, then the discriminator's on the real batch and the same composites (detached).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from datagen.generators.cgn import MECHANISMS, SHIFT_DIMS, CgnGenerator, CounterfactualNetwork, compose
from datagen.generators.cgn_config import CgnTrainConfig
from datagen.generators.cgn_losses import (
    binary_entropy_loss,
    edge_loss,
    lsgan_loss,
    mask_size_loss,
    texture_loss,
)
from datagen.generators.cvae_training import check_training_data
from datagen.transfer.vgg import VggFeatures, load_vgg_features

# Where the architecture sits in a job's config (datagen.config.GeneratorConfig.cgn_train), for advice.
_ARCHITECTURE = "datagen.generator.cgn_train.model"
LOSS_NAMES = ("generator", "discriminator", "adversarial", "mask_size", "binary", "edge", "texture")


@dataclass(frozen=True)
class CgnEpochLosses:
    """Batch means over one epoch."""

    epoch: int
    generator: float  # the generator's whole weighted loss
    discriminator: float
    adversarial: float
    mask_size: float
    binary: float
    edge: float
    texture: float


class Discriminator(nn.Module):
    """The authors' linear discriminator: an MLP over [flattened image; label embedding], dropout after the hidden layers."""

    def __init__(self, num_classes: int, image_size: int, width: int, dropout: float) -> None:
        super().__init__()
        self.label_embedding = nn.Embedding(num_classes, num_classes)
        self.layers = nn.Sequential(
            nn.Linear(3 * image_size**2 + num_classes, width), nn.LeakyReLU(0.2),
            nn.Linear(width, width), nn.Dropout(dropout), nn.LeakyReLU(0.2),
            nn.Linear(width, width), nn.Dropout(dropout), nn.LeakyReLU(0.2),
            nn.Linear(width, 1),
        )

    def forward(self, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return self.layers(torch.cat([images.flatten(1), self.label_embedding(classes)], dim=1)).squeeze(1)


class ConvDiscriminator(nn.Module):
    """Three strided 4x4 convolutions (c, 2c, 4c channels), dropout, a linear layer to ``width`` features, then
    score = linear(features) + <class embedding, features>: the projection discriminator, whose class term
    judges the features (the stroke's shape among them) rather than sitting beside the pixels as one more input."""

    def __init__(self, num_classes: int, image_size: int, width: int, dropout: float, channels: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, channels, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(channels, 2 * channels, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * channels, 4 * channels, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * channels * (image_size // 8) ** 2, width), nn.LeakyReLU(0.2),
        )
        self.score = nn.Linear(width, 1)
        self.class_embedding = nn.Embedding(num_classes, width)

    def forward(self, images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        features = self.features(images)
        return self.score(features).squeeze(1) + (self.class_embedding(classes) * features).sum(1)


def make_discriminator(config: CgnTrainConfig) -> nn.Module:
    """The discriminator ``config.discriminator`` names, for the architecture's classes and image size."""
    architecture = config.model
    if config.discriminator == "conv":
        return ConvDiscriminator(architecture.num_classes, architecture.image_size, config.discriminator_width,
                                 config.discriminator_dropout, config.discriminator_channels)
    return Discriminator(architecture.num_classes, architecture.image_size, config.discriminator_width, config.discriminator_dropout)


def random_latents(count: int, noise_dim: int, rng: torch.Generator) -> torch.Tensor:
    """Training latents: standard normal noises and uniform texture shifts, laid out as the generator's rows."""
    blocks = [(noise_dim, torch.randn), (noise_dim, torch.randn), (SHIFT_DIMS, torch.rand), (noise_dim, torch.randn), (SHIFT_DIMS, torch.rand)]
    return torch.cat([draw(count, width, generator=rng) for width, draw in blocks], dim=1)


class CgnTrainer:
    """The networks, optimisers and losses of one training run; ``step`` is one generator and one discriminator update."""

    def __init__(self, config: CgnTrainConfig, rng: torch.Generator) -> None:
        self.config, self.rng = config, rng
        architecture = config.model
        self.network = CounterfactualNetwork(architecture)
        self.discriminator = make_discriminator(config)
        adam = dict(lr=config.learning_rate, betas=config.betas)
        self.generator_optimizer = torch.optim.Adam(self.network.parameters(), **adam)
        self.discriminator_optimizer = torch.optim.Adam(self.discriminator.parameters(), **adam)
        self.features: VggFeatures | None = None
        if config.texture_weight > 0:
            self.features = load_vgg_features(str(config.texture_features), config.texture_layers, torch.device("cpu"))

    def generator_losses(self, real: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Composites of random latents for ``classes`` and the generator's loss terms (weighted sum first)."""
        config = self.config
        latents = random_latents(len(classes), config.model.noise_dim, self.rng)
        mask, foreground, background = self.network(latents, classes.view(-1, 1).expand(-1, len(MECHANISMS)))
        composites = compose(mask, foreground, background)
        terms = {
            "adversarial": lsgan_loss(self.discriminator(composites, classes), 1.0),
            "mask_size": mask_size_loss(mask, config.mask_target, config.mask_tolerance),
            "binary": binary_entropy_loss(mask),
            "edge": edge_loss(mask, config.edge_px),
            "texture": (texture_loss(self.features, composites, real, config.texture_layers)
                        if self.features is not None else torch.zeros(())),
        }
        weights = {"adversarial": 1.0, "mask_size": config.mask_weight, "binary": config.binary_weight,
                   "edge": config.edge_weight, "texture": config.texture_weight}
        total = sum(weights[name] * value for name, value in terms.items())
        return composites, {"generator": total, **terms}

    def step(self, real: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One update of each network; returns the detached losses in ``LOSS_NAMES`` order."""
        classes = torch.randint(self.config.model.num_classes, (len(labels),), generator=self.rng)
        composites, terms = self.generator_losses(real, classes)
        self.generator_optimizer.zero_grad(set_to_none=True)
        terms["generator"].backward()
        self.generator_optimizer.step()

        discriminator_loss = (lsgan_loss(self.discriminator(real, labels), 1.0)
                              + lsgan_loss(self.discriminator(composites.detach(), classes), 0.0)) / 2
        self.discriminator_optimizer.zero_grad(set_to_none=True)
        discriminator_loss.backward()
        self.discriminator_optimizer.step()
        terms["discriminator"] = discriminator_loss
        return torch.stack([terms[name].detach() for name in LOSS_NAMES])


def train_cgn(
    images: torch.Tensor,
    labels: torch.Tensor,
    config: CgnTrainConfig,
    on_progress: Callable[[int, float], None] | None = None,
) -> tuple[CgnGenerator, list[CgnEpochLosses]]:
    """Fit a CounterfactualNetwork with Adam on CPU; the same seed and data give the same weights.

    Args:
        images: float tensor (N, 3, S, S) in [0, 1] with S = ``config.model.image_size``.
        labels: integer tensor (N,) in [0, ``config.model.num_classes``).
        config: architecture, losses, optimisation and seed.
        on_progress: called as ``on_progress(epoch, mean generator loss)`` after every epoch.

    Returns:
        The trained generator and one CgnEpochLosses per epoch.

    Raises:
        DatagenError: images or labels that do not fit the architecture, unusable texture features.
    """
    check_training_data(images, labels, config.model, "CGN", _ARCHITECTURE)
    images, labels = images.float(), labels.long()
    threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        # Initialisation and dropout use the global RNG: seed it without disturbing the caller's.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            rng = torch.Generator().manual_seed(config.seed)
            trainer = CgnTrainer(config, rng)
            history = []
            for epoch in range(config.epochs):
                totals, batches = torch.zeros(len(LOSS_NAMES)), 0
                for batch in torch.randperm(len(images), generator=rng).split(config.batch_size):
                    if len(batch) < 2:  # batch norm needs two images
                        continue
                    totals += trainer.step(images[batch], labels[batch])
                    batches += 1
                history.append(CgnEpochLosses(epoch, *(totals / max(batches, 1)).tolist()))
                if on_progress is not None:
                    on_progress(epoch, history[-1].generator)
    finally:
        torch.set_num_threads(threads)
    return CgnGenerator(trainer.network), history
