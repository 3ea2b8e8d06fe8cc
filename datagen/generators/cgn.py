"""The counterfactual generative network (CGN, seed 001) behind the ``Generator`` interface.

Three independent mechanisms, each with its own noise and class: a shape mask m, a foreground
texture f and a background b, composed as x = m * f + (1 - m) * b. Each mechanism is a linear layer
from [noise; label embedding] to a (2 width, S/4, S/4) map and two upsampling blocks, as in the
authors' MNIST code (the textures' width may be set apart, ``texture_width``); the mask ends in a sigmoid,
the textures in a sigmoid over RGB. A texture is
shifted cyclically by a random offset before composing (the authors tile it 2 x 2 and crop at
random, the same thing), so a texture cannot carry a shape that lines up with the mask.

A latent row holds every mechanism's inputs, drawn in this order from one seed: shape noise,
foreground noise, foreground shift, background noise, background shift. An observational image
(all three classes equal) uses one row; a counterfactual takes each mechanism's block from the row
of its own seed (``mix_latents``), so the counterfactual with seeds (s, s, s) and classes (y, y, y)
is the observational image of seed s and class y.

Saved like the CVAE (datagen/generators/saved.py): ``config.json`` and a plain state_dict.
"""

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from datagen.errors import DatagenError
from datagen.generators.cgn_config import CgnArchitecture
from datagen.generators.saved import (
    CONFIG_NAME,
    generator_directory,
    load_weights_into,
    read_architecture,
    save_generator_files,
    weights_digest,
)

GENERATOR_KIND = "cgn"  # the "generator" field of config.json
MECHANISMS = ("shape", "texture", "background")  # the order of classes and seeds everywhere (json records too)
SHIFT_DIMS = 2  # a texture's (row, column) offset, as fractions of the side in [0, 1)


def compose(mask: torch.Tensor, foreground: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """The composer: x = m * f + (1 - m) * b, with m (N, 1, S, S) broadcast over f and b (N, 3, S, S)."""
    return mask * foreground + (1 - mask) * background


def shift_cyclically(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Roll each image by its own (row, column) offset: image n moves by floor(shifts[n] * S) pixels.

    Args:
        images: (N, C, S, S). shifts: (N, 2) fractions in [0, 1).
    """
    count, channels, size, _ = images.shape
    offsets = (shifts.to(images.device) * size).long().clamp(0, size - 1)
    positions = torch.arange(size, device=images.device)
    rows = (positions.view(1, size) + offsets[:, :1]) % size  # (N, S): source row of each output row
    columns = (positions.view(1, size) + offsets[:, 1:]) % size
    images = images.gather(2, rows.view(count, 1, size, 1).expand(count, channels, size, size))
    return images.gather(3, columns.view(count, 1, 1, size).expand(count, channels, size, size))


def _upsample_block(channels_in: int, channels_out: int) -> list[nn.Module]:
    return [nn.Upsample(scale_factor=2), nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels_out), nn.LeakyReLU(0.2)]


class Mechanism(nn.Module):
    """One mechanism: (noise, class) -> a (channels, S, S) map in [0, 1]."""

    def __init__(self, architecture: CgnArchitecture, channels: int, texture: bool) -> None:
        super().__init__()
        start = architecture.image_size // 4
        width = (architecture.texture_width or architecture.width) if texture else architecture.width
        self.start = (2 * width, start, start)
        self.label_embedding = nn.Embedding(architecture.num_classes, architecture.label_embedding_dim)
        self.project = nn.Linear(architecture.noise_dim + architecture.label_embedding_dim, 2 * width * start * start)
        # The textures get a wider first block (as the authors'): they carry more detail than a mask.
        first = 2 * width if texture else width
        self.layers = nn.Sequential(
            nn.BatchNorm2d(2 * width), *_upsample_block(2 * width, first), *_upsample_block(first, width),
            nn.Conv2d(width, channels, 3, padding=1), nn.Sigmoid(),
        )

    def forward(self, noise: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        hidden = self.project(torch.cat([noise, self.label_embedding(classes)], dim=1))
        return self.layers(hidden.view(-1, *self.start))


class CounterfactualNetwork(nn.Module):
    """The three mechanisms; ``forward`` returns (mask, foreground, background) before composing."""

    def __init__(self, architecture: CgnArchitecture) -> None:
        super().__init__()
        self.architecture = architecture
        self.shape = Mechanism(architecture, 1, texture=False)
        self.texture = Mechanism(architecture, 3, texture=True)
        self.background = Mechanism(architecture, 3, texture=True)

    def forward(self, latents: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mask (N, 1, S, S), shifted foreground and background (N, 3, S, S), all in [0, 1].

        Args:
            latents: (N, latent_dim) rows laid out as ``split_latents`` reads them.
            classes: (N, 3) the shape's, texture's and background's class of each image.
        """
        shape_noise, texture_noise, texture_shift, background_noise, background_shift = split_latents(latents, self.architecture.noise_dim)
        mask = self.shape(shape_noise, classes[:, 0])
        foreground = shift_cyclically(self.texture(texture_noise, classes[:, 1]), texture_shift)
        background = shift_cyclically(self.background(background_noise, classes[:, 2]), background_shift)
        return mask, foreground, background


def latent_size(noise_dim: int) -> int:
    """Width of a latent row: three noises and two texture shifts."""
    return 3 * noise_dim + 2 * SHIFT_DIMS


def split_latents(latents: torch.Tensor, noise_dim: int) -> tuple[torch.Tensor, ...]:
    """(shape noise, texture noise, texture shift, background noise, background shift) of latent rows."""
    return tuple(latents.split([noise_dim, noise_dim, SHIFT_DIMS, noise_dim, SHIFT_DIMS], dim=1))


def mix_latents(shape: torch.Tensor, texture: torch.Tensor, background: torch.Tensor, noise_dim: int) -> torch.Tensor:
    """Rows whose shape block comes from ``shape``, texture block from ``texture``, background block from ``background``."""
    blocks = [split_latents(rows, noise_dim) for rows in (shape, texture, background)]
    return torch.cat([blocks[0][0], blocks[1][1], blocks[1][2], blocks[2][3], blocks[2][4]], dim=1)


def draw_latents(seeds: Sequence[int], noise_dim: int, truncation: float) -> torch.Tensor:
    """One latent row per seed (noises standard normal scaled by ``truncation``, shifts uniform), row i from seeds[i] alone."""
    if truncation <= 0:
        raise DatagenError(f"truncation must be > 0 (got {truncation})")
    rows = []
    for seed in seeds:
        draws = torch.Generator().manual_seed(int(seed))
        rows.append(torch.cat([
            truncation * torch.randn(noise_dim, generator=draws),
            truncation * torch.randn(noise_dim, generator=draws), torch.rand(SHIFT_DIMS, generator=draws),
            truncation * torch.randn(noise_dim, generator=draws), torch.rand(SHIFT_DIMS, generator=draws),
        ]))
    return torch.stack(rows) if rows else torch.empty(0, latent_size(noise_dim))


class CgnGenerator:
    """A trained CounterfactualNetwork as a ``Generator`` that can also compose counterfactuals.

    The weights are frozen at construction, so ``generator_id`` ("cgn-" and 12 hex digits of the
    weights' sha256) names exactly the weights that made an image. Batch norm runs on its running
    statistics, so an image depends only on its own latent and classes, never on its batch.
    """

    def __init__(self, model: CounterfactualNetwork, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.generator_id = f"{GENERATOR_KIND}-{weights_digest(model.architecture, self.model)[:12]}"
        self.noise_dim = model.architecture.noise_dim
        self.latent_dim = latent_size(self.noise_dim)
        self.num_classes = model.architecture.num_classes
        self.image_size = model.architecture.image_size

    def sample_latents(self, seeds: Sequence[int], truncation: float) -> torch.Tensor:
        """One latent row per seed, float32 (len(seeds), latent_dim) on CPU; row i depends only on ``seeds[i]``."""
        return draw_latents(seeds, self.noise_dim, truncation)

    def counterfactual_latents(self, seeds: torch.Tensor, truncation: float) -> torch.Tensor:
        """Latent rows whose mechanism j's block comes from the row of ``seeds[:, j]`` (shape, texture, background)."""
        per_mechanism = [self.sample_latents(seeds[:, index].tolist(), truncation) for index in range(len(MECHANISMS))]
        return mix_latents(*per_mechanism, self.noise_dim)

    def mechanisms(self, latents: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mask, foreground, background) for latent rows and (N, 3) mechanism classes, float32 on CPU."""
        latents, classes = self._inputs(latents, classes)
        with torch.inference_mode():
            return tuple(part.float().cpu() for part in self.model(latents, classes))

    def generate_counterfactuals(self, latents: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Composites (N, 3, S, S) in [0, 1] for (N, 3) classes of shape, texture and background."""
        return compose(*self.mechanisms(latents, classes))

    def generate(self, latents: torch.Tensor, classes: torch.Tensor, truncation: float) -> torch.Tensor:
        """Observational images: every mechanism gets the image's class. ``truncation`` was already
        applied by ``sample_latents`` (accepted for the interface)."""
        if classes.ndim != 1:
            raise DatagenError(f"{self.generator_id}: classes must have shape (N,) (got {tuple(classes.shape)})")
        return self.generate_counterfactuals(latents, classes.view(-1, 1).expand(-1, len(MECHANISMS)))

    def direction_features(self, latents: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """A CGN is edited by mixing its mechanisms' classes, not along GANSpace directions."""
        raise DatagenError(f"{self.generator_id}: a CGN has no GANSpace layer; use the observational or counterfactual strategy")

    def save(self, directory: Path) -> None:
        """Write ``config.json`` and ``pytorch_model.bin`` into ``directory`` (created if needed, crash-safe)."""
        save_generator_files(directory, GENERATOR_KIND, self.model.architecture, self.model)

    def _inputs(self, latents: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Check shapes and class range; return both on the model's device."""
        if latents.ndim != 2 or latents.shape[1] != self.latent_dim:
            raise DatagenError(f"{self.generator_id}: latents must have shape (N, {self.latent_dim}) (got {tuple(latents.shape)})")
        if classes.shape != (latents.shape[0], len(MECHANISMS)):
            raise DatagenError(f"{self.generator_id}: mechanism classes must have shape ({latents.shape[0]}, 3) "
                               f"(got {tuple(classes.shape)})")
        if classes.numel() and (classes.min() < 0 or classes.max() >= self.num_classes):
            raise DatagenError(f"{self.generator_id}: classes must lie in [0, {self.num_classes}) "
                               f"(got {int(classes.min())}..{int(classes.max())})")
        return latents.to(self.device, torch.float32), classes.to(self.device, torch.long)


def load_cgn(directory: Path, device: torch.device | str = "cpu") -> CgnGenerator:
    """Restore a generator written by ``CgnGenerator.save``; every weight key must match.

    Raises:
        DatagenError: one line naming the directory and what is missing, unreadable or mismatched.
    """
    directory = generator_directory(directory, "CGN")
    architecture = read_architecture(directory / CONFIG_NAME, GENERATOR_KIND, "CGN", CgnArchitecture)
    return CgnGenerator(load_weights_into(CounterfactualNetwork(architecture), directory, "CGN"), device)
