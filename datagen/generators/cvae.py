"""The class-conditional VAE of GenInt's Colored-MNIST experiment, behind the ``Generator`` interface.

Encoder q(z | x, y) and decoder p(x | z, y) are one-hidden-layer MLPs over the flattened image and
a learned label embedding. The decoder's first linear layer sees [z; embedding(y)] and is linear in
it, like BigGAN's ``gen_z``, so the same GANSpace PCA and latent edits run on both generators.
With ``label_modulation`` the label also scales and shifts that layer's output per hidden unit
(FiLM; BigGAN's class-conditional batch norm does the same): entering only additively, the label
was mostly ignored and the latent decided the background colour across classes.

A saved generator is a directory with ``config.json`` (the architecture) and ``pytorch_model.bin``
(a plain state_dict, read with ``torch.load(weights_only=True)`` so no pickled object ever runs).
"""

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from datagen.errors import DatagenError
from datagen.generators.cvae_config import CvaeArchitecture
from datagen.generators.saved import (  # noqa: F401  (CONFIG_NAME, WEIGHTS_NAME: the names tests and users know)
    CONFIG_NAME,
    WEIGHTS_NAME,
    generator_directory,
    load_weights_into,
    read_architecture,
    save_generator_files,
    weights_digest,
)

GENERATOR_KIND = "cvae"  # the "generator" field of config.json, so a loader can tell generators apart


class ConditionalVae(nn.Module):
    """MLP encoder and decoder conditioned on a label embedding; the decoder returns pixel logits."""

    def __init__(self, architecture: CvaeArchitecture) -> None:
        super().__init__()
        self.architecture = architecture
        pixels = 3 * architecture.image_size**2
        hidden, latent, embedding = architecture.hidden_dim, architecture.latent_dim, architecture.label_embedding_dim
        self.label_embedding = nn.Embedding(architecture.num_classes, embedding)
        self.encoder = nn.Sequential(nn.Linear(pixels + embedding, hidden), nn.ReLU())
        self.to_mean = nn.Linear(hidden, latent)
        self.to_log_variance = nn.Linear(hidden, latent)
        self.decoder_input = nn.Linear(latent + embedding, hidden)  # the GANSpace layer
        # Gain and shift per hidden unit and class, zero at the start (the plain decoder).
        self.label_modulation = nn.Embedding(architecture.num_classes, 2 * hidden) if architecture.label_modulation else None
        if self.label_modulation is not None:
            nn.init.zeros_(self.label_modulation.weight)
        self.decoder = nn.Sequential(nn.ReLU(), nn.Linear(hidden, pixels))

    def encode(self, images: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x, y) for images (N, 3, S, S) in [0, 1] and classes (N,)."""
        hidden = self.encoder(torch.cat([images.flatten(1), self.label_embedding(classes)], dim=1))
        return self.to_mean(hidden), self.to_log_variance(hidden)

    def decoder_features(self, latents: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """The decoder's first linear layer on [z; embedding(y)], shape (N, hidden_dim)."""
        return self.decoder_input(torch.cat([latents, self.label_embedding(classes)], dim=1))

    def decode_logits(self, latents: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of every pixel, shape (N, 3, S, S)."""
        size = self.architecture.image_size
        features = self.decoder_features(latents, classes)
        if self.label_modulation is not None:
            gain, shift = self.label_modulation(classes).chunk(2, dim=1)
            features = features * (1 + gain) + shift
        return self.decoder(features).view(-1, 3, size, size)


class CvaeGenerator:
    """A trained ConditionalVae as a ``Generator``: seeded latents, images, GANSpace features, save.

    The weights are frozen at construction, so ``generator_id`` ("cvae-" and 12 hex digits of
    ``weights_digest``) names exactly the weights that made an image.
    """

    def __init__(self, model: ConditionalVae, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.generator_id = f"{GENERATOR_KIND}-{weights_digest(model.architecture, self.model)[:12]}"
        self.latent_dim = model.architecture.latent_dim
        self.num_classes = model.architecture.num_classes
        self.image_size = model.architecture.image_size

    def sample_latents(self, seeds: Sequence[int], truncation: float) -> torch.Tensor:
        """Standard normal latents scaled by ``truncation``, one per seed, each drawn from its own seed.

        Args:
            seeds: one non-negative integer per latent; row i depends only on ``seeds[i]``.
            truncation: scale of the prior draw (1.0 samples the prior itself); must be > 0.

        Returns:
            float32 tensor (len(seeds), latent_dim) on CPU.
        """
        if truncation <= 0:
            raise DatagenError(f"{self.generator_id}: truncation must be > 0 (got {truncation})")
        rows = [
            torch.randn(self.latent_dim, generator=torch.Generator().manual_seed(int(seed)))
            for seed in seeds
        ]
        latents = torch.stack(rows) if rows else torch.empty(0, self.latent_dim)
        return latents * truncation

    def generate(self, latents: torch.Tensor, classes: torch.Tensor, truncation: float) -> torch.Tensor:
        """Decoded images: the Bernoulli means sigmoid(logits), shape (N, 3, S, S) in [0, 1], float32 on CPU.

        ``truncation`` is accepted for the interface only: a VAE decoder has no truncation input,
        the scale was already applied by ``sample_latents``.
        """
        latents, classes = self._inputs(latents, classes)
        with torch.inference_mode():
            images = torch.sigmoid(self.model.decode_logits(latents, classes))
        return images.float().cpu()

    def direction_features(self, latents: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """The decoder's first linear layer on [z; label embedding], shape (N, hidden_dim), on CPU."""
        latents, classes = self._inputs(latents, classes)
        with torch.inference_mode():
            return self.model.decoder_features(latents, classes).float().cpu()

    def save(self, directory: Path) -> None:
        """Write ``config.json`` and ``pytorch_model.bin`` into ``directory`` (created if needed, crash-safe)."""
        save_generator_files(directory, GENERATOR_KIND, self.model.architecture, self.model)

    def _inputs(self, latents: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Check shapes and class range; return both on the model's device."""
        if latents.ndim != 2 or latents.shape[1] != self.latent_dim:
            raise DatagenError(
                f"{self.generator_id}: latents must have shape (N, {self.latent_dim}) (got {tuple(latents.shape)})"
            )
        if classes.shape != (latents.shape[0],):
            raise DatagenError(
                f"{self.generator_id}: classes must have shape ({latents.shape[0]},) to match the latents "
                f"(got {tuple(classes.shape)})"
            )
        if classes.numel() and (classes.min() < 0 or classes.max() >= self.num_classes):
            raise DatagenError(
                f"{self.generator_id}: classes must lie in [0, {self.num_classes}) "
                f"(got {int(classes.min())}..{int(classes.max())})"
            )
        return latents.to(self.device, torch.float32), classes.to(self.device, torch.long)


def load_cvae(directory: Path, device: torch.device | str = "cpu") -> CvaeGenerator:
    """Restore a generator written by ``CvaeGenerator.save``; every weight key must match.

    Args:
        directory: holds ``config.json`` and ``pytorch_model.bin``.
        device: where the model runs.

    Raises:
        DatagenError: one line naming the directory and what is missing, unreadable or mismatched.
    """
    directory = generator_directory(directory, "CVAE")
    architecture = read_architecture(directory / CONFIG_NAME, GENERATOR_KIND, "CVAE", CvaeArchitecture)
    return CvaeGenerator(load_weights_into(ConditionalVae(architecture), directory, "CVAE"), device)
