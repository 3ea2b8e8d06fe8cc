"""The interface every generator offers, so directions, strategies, actors and analyses never ask which one runs.

Latents are drawn per seed, so sample i of a work unit depends only on its own seed and never on the
batch it was generated in; the same seed gives the same latent on every machine.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch


class Generator(Protocol):
    """A class-conditional image generator with a latent space the interventions edit."""

    generator_id: str  # names the model and weights, e.g. "biggan-deep-256" or "cvae-3f2a..."
    latent_dim: int
    num_classes: int
    image_size: int
    device: torch.device

    def sample_latents(self, seeds: Sequence[int], truncation: float) -> torch.Tensor:
        """One latent per seed, shape (len(seeds), latent_dim), float32 on CPU; row i depends only on seeds[i]."""

    def generate(self, latents: torch.Tensor, classes: torch.Tensor, truncation: float) -> torch.Tensor:
        """Images in [0, 1], shape (N, 3, image_size, image_size), float32 on CPU."""

    def direction_features(self, latents: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Activations of the layer whose PCA gives the GANSpace directions, shape (N, F), on CPU."""

    def save(self, directory: Path) -> None:
        """Write the weights and config so ``load_generator(directory)`` restores this generator."""


@runtime_checkable
class CounterfactualGenerator(Generator, Protocol):
    """A generator whose mechanisms (shape, texture, background) each take their own class and noise (the CGN)."""

    def counterfactual_latents(self, seeds: torch.Tensor, truncation: float) -> torch.Tensor:
        """Latent rows from (N, 3) noise seeds, mechanism j's part drawn from ``seeds[:, j]``."""

    def generate_counterfactuals(self, latents: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], (N, 3, S, S), float32 on CPU, for (N, 3) classes of shape, texture and background."""
