"""The CGN's losses besides the adversarial one: what keeps the mask a mask.

- mask size: each mask's mean should lie within ``tolerance`` of tau (the share of the image the
  shape covers); a hinge, zero inside the band, so it only stops a mask growing over the whole
  image or vanishing.
- binary entropy: the mask should be 0 or 1 per pixel (the authors' BinaryLoss), so the composite
  is a shape cut out of one texture and pasted on the other, not a blend of both.
- edge mass: the share of a mask's mass within ``edge_px`` of the border (Re-CGN's addition):
  a mask that spreads into the border is the degenerate solution where the "background" mechanism
  draws the digit inside a full mask.
- texture: mean squared difference of Gram matrices of a frozen feature extractor's taps between
  generated composites and real images, as the authors' PerceptualLoss (style part) does.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from datagen.transfer.gatys import gram_matrices
from datagen.transfer.vgg import VggFeatures

# Masks are clamped this far from 0 and 1 before a logarithm (the authors clamp to [1e-4, 1 - 1e-4]).
MASK_EPSILON = 1e-4


def lsgan_loss(scores: torch.Tensor, target: float) -> torch.Tensor:
    """Least-squares GAN loss: mean (score - target)^2, target 1 for real, 0 for fake."""
    return F.mse_loss(scores, torch.full_like(scores, target))


def binary_entropy_loss(mask: torch.Tensor) -> torch.Tensor:
    """Mean binary entropy -(m log m + (1 - m) log(1 - m)) over every pixel of masks (N, 1, S, S), in nats."""
    mask = mask.clamp(MASK_EPSILON, 1 - MASK_EPSILON)
    return -(mask * mask.log() + (1 - mask) * (1 - mask).log()).mean()


def mask_means(mask: torch.Tensor) -> torch.Tensor:
    """Each mask's mean, (N,)."""
    return mask.flatten(1).mean(1)


def mask_size_loss(mask: torch.Tensor, target: float, tolerance: float) -> torch.Tensor:
    """Mean over masks of max(0, |mean(m) - target| - tolerance)."""
    return F.relu((mask_means(mask) - target).abs() - tolerance).mean()


def border_band(size: int, edge_px: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(size, size) float: 1 within ``edge_px`` of the border, 0 inside."""
    band = torch.ones(size, size, device=device)
    band[edge_px : size - edge_px, edge_px : size - edge_px] = 0
    return band


def edge_mass(mask: torch.Tensor, edge_px: int) -> torch.Tensor:
    """Each mask's share of its mass within ``edge_px`` of the border, (N,) in [0, 1] (0 for an empty mask)."""
    band = border_band(mask.shape[-1], edge_px, mask.device)
    total = mask.flatten(1).sum(1)
    return (mask * band).flatten(1).sum(1) / total.clamp_min(MASK_EPSILON)


def edge_loss(mask: torch.Tensor, edge_px: int) -> torch.Tensor:
    """Mean edge mass of masks (N, 1, S, S)."""
    return edge_mass(mask, edge_px).mean()


def texture_loss(features: VggFeatures, generated: torch.Tensor, real: torch.Tensor, layers: Sequence[str]) -> torch.Tensor:
    """Sum over ``layers`` of the mean squared Gram-matrix difference between generated and real images, row by row."""
    generated_taps = features(generated)
    with torch.no_grad():
        real_taps = features(real)
    return sum((gram_matrices(generated_taps[name]) - gram_matrices(real_taps[name])).square().mean() for name in layers)
