"""Gatys style transfer for a batch of (content, style) pairs, each with its own number of steps.

Per image the objective is style_weight * sum over style layers of mean((G(x) - G(style))^2) plus
content_weight * sum over content layers of mean((F(x) - F(content))^2), G the Gram matrix divided
by C*H*W. The batch objective is the sum of the per-image objectives, so image i's gradient is the
gradient of its own loss, and the batched L-BFGS keeps every image's step independent as well.
One step is one L-BFGS iteration: clamp to [0, 1] (as the reference closure does), evaluate the loss
and its gradient, move.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from datagen.errors import DatagenError
from datagen.transfer.config import TransferConfig
from datagen.transfer.lbfgs import BatchedLBFGS
from datagen.transfer.vgg import VggFeatures


@dataclass
class Targets:
    """What each image is pulled towards: its style image's Gram matrices and its content image's features."""

    grams: dict[str, torch.Tensor]
    features: dict[str, torch.Tensor]

    def select(self, rows: torch.Tensor) -> "Targets":
        return Targets(
            {name: gram[rows] for name, gram in self.grams.items()},
            {name: value[rows] for name, value in self.features.items()},
        )


def gram_matrices(activations: torch.Tensor) -> torch.Tensor:
    """Per-image Gram matrices (N, C, C) of activations (N, C, H, W), divided by C*H*W."""
    batch, channels, height, width = activations.shape
    flat = activations.reshape(batch, channels, height * width)
    return torch.bmm(flat, flat.transpose(1, 2)) / (channels * height * width)


@torch.no_grad()
def compute_targets(features: VggFeatures, content: torch.Tensor, style: torch.Tensor, config: TransferConfig) -> Targets:
    """Targets for content and style images (N, 3, H, W) in [0, 1], on the features' device."""
    style_taps, content_taps = features(style), features(content)
    return Targets(
        {name: gram_matrices(style_taps[name]) for name in config.style_layers},
        {name: content_taps[name] for name in config.content_layers},
    )


def style_and_content_losses(
    features: VggFeatures, images: torch.Tensor, targets: Targets, config: TransferConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unweighted per-image (style, content) losses, each of shape (N,)."""
    taps = features(images)
    style = sum(
        (gram_matrices(taps[name]) - targets.grams[name]).square().mean(dim=(1, 2)) for name in config.style_layers
    )
    content = sum(
        (taps[name] - targets.features[name]).square().mean(dim=(1, 2, 3)) for name in config.content_layers
    )
    return style, content


def per_image_objective(features: VggFeatures, images: torch.Tensor, targets: Targets, config: TransferConfig) -> torch.Tensor:
    """Weighted per-image objective (N,) that L-BFGS minimises."""
    style, content = style_and_content_losses(features, images, targets, config)
    return config.style_weight * style + config.content_weight * content


def check_pairs(content: torch.Tensor, style: torch.Tensor, steps: Sequence[int]) -> None:
    """Raise DatagenError unless content and style are matching (N, 3, H, W) batches with N step counts."""
    for name, images in (("content", content), ("style", style)):
        if images.dim() != 4 or images.shape[1] != 3:
            raise DatagenError(f"style transfer: {name} images must be (N, 3, H, W) RGB, got shape {tuple(images.shape)}")
    if content.shape != style.shape:
        raise DatagenError(
            f"style transfer: content {tuple(content.shape)} and style {tuple(style.shape)} batches must match; "
            "resize both to the same size"
        )
    if len(steps) != content.shape[0] or any(count < 0 for count in steps):
        raise DatagenError(f"style transfer: need {content.shape[0]} non-negative step counts, got {list(steps)}")


def transfer_batch(
    content: torch.Tensor, style: torch.Tensor, steps: Sequence[int], features: VggFeatures, config: TransferConfig
) -> torch.Tensor:
    """Optimise content[i] towards style[i]'s style for steps[i] L-BFGS iterations, all in one batch.

    Args:
        content: natural images (N, 3, H, W) in [0, 1]; also the starting point.
        style: interventional images, same shape.
        steps: iterations per pair.
        features: the VGG taps (their device is where this runs).
        config: weights, layers, lr, history size.

    Returns:
        The transferred images (N, 3, H, W) in [0, 1], float32 on CPU.

    Raises:
        DatagenError: shapes that do not pair up, or a wrong number of step counts.
    """
    check_pairs(content, style, steps)
    device = features.device
    # fp32 throughout: L-BFGS builds its curvature from differences of gradients, which half
    # precision would drown in rounding.
    content = content.to(device, torch.float32)
    targets = compute_targets(features, content, style.to(device, torch.float32), config)
    results = content.clamp(0, 1)
    # The optimiser sees each image as one flat row, so the image stays in the default layout even
    # when the network runs channels_last.
    image = content.clone(memory_format=torch.contiguous_format).requires_grad_(True)
    optimiser = BatchedLBFGS(len(steps), config.lr, config.history_size, device)
    # Pairs need different step counts. The batch runs until the longest is done; a pair leaves the
    # batch the moment it reaches its own count (its image is stored, its rows are cut from the
    # image, the targets and the L-BFGS history), so no compute goes to finished pairs and no
    # result depends on what else was in the batch. Who is active is known on the host from the
    # step counts alone, so leaving never waits for the device.
    active = torch.arange(len(steps))
    step_counts = torch.tensor(list(steps))
    for iteration in range(max(steps, default=0) + 1):
        done = step_counts[active] == iteration
        if done.any():
            results[active[done].to(device)] = image.detach()[done.to(device)].clamp(0, 1)
            kept = torch.nonzero(~done).squeeze(1)
            active = active[kept]
            kept = kept.to(device)
            image = image.detach()[kept].requires_grad_(True)
            targets = targets.select(kept)
            optimiser.keep(kept)
        if not len(active):
            break
        with torch.no_grad():
            image.clamp_(0, 1)
        objective = per_image_objective(features, image, targets, config).sum()
        (grad,) = torch.autograd.grad(objective, image)
        optimiser.step(image.detach().view(len(active), -1), grad.reshape(len(active), -1))
    return results.cpu()
