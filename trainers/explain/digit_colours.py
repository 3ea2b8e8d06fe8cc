"""Colour interventions on digit images: light strokes over one uniform background colour (the
digits benchmarks' images, x = a * stroke + (1 - a) * background per pixel, a the stroke's coverage).

From an image alone the coverage is recovered through the background's darkest channel, where
strokes and background differ most; the image is then repainted with other colours, so a sweep
changes the background (or the strokes) and nothing else.
"""

import torch

# A channel this close to the stroke colour's cannot tell stroke from background.
_MIN_CONTRAST = 0.05
WHITE = (1.0, 1.0, 1.0)


def background_colour(images: torch.Tensor, patch_px: int = 3) -> torch.Tensor:
    """Each image's background colour: the per-channel median of its four corner patches, (N, 3).

    Args:
        images: (N, 3, S, S) in [0, 1], the digit centred.
    """
    p = patch_px
    corners = [images[:, :, :p, :p], images[:, :, :p, -p:], images[:, :, -p:, :p], images[:, :, -p:, -p:]]
    pixels = torch.cat([corner.reshape(len(images), 3, -1) for corner in corners], dim=2)
    return pixels.median(dim=2).values


def stroke_coverage(images: torch.Tensor, background: torch.Tensor, stroke: tuple[float, float, float] = WHITE) -> torch.Tensor:
    """Each pixel's stroke coverage a in [0, 1], (N, 1, S, S), read in the channel where the image's
    background and the stroke colour differ most.

    Raises:
        ValueError: an image whose background is the stroke colour in every channel (nothing to read).
    """
    stroke_colour = torch.tensor(stroke, dtype=images.dtype).view(1, 3)
    contrast = stroke_colour - background
    channel = contrast.abs().argmax(dim=1)
    rows = torch.arange(len(images))
    best = contrast[rows, channel]
    if (best.abs() < _MIN_CONTRAST).any():
        raise ValueError("an image's background is its strokes' colour: the strokes cannot be told from it")
    pixels = images[rows, channel]  # (N, S, S)
    coverage = (pixels - background[rows, channel].view(-1, 1, 1)) / best.view(-1, 1, 1)
    return coverage.clamp(0, 1).unsqueeze(1)


def repaint(coverage: torch.Tensor, background: torch.Tensor, stroke: torch.Tensor) -> torch.Tensor:
    """Strokes of colour ``stroke`` over ``background``: (N, 1, S, S), (N, 3), (N, 3) -> (N, 3, S, S)."""
    return coverage * stroke.view(-1, 3, 1, 1) + (1 - coverage) * background.view(-1, 3, 1, 1)


def colour_steps(start: torch.Tensor, end: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` colours evenly spaced from each start to its end: (N, 3), (N, 3) -> (N, steps, 3)."""
    fraction = torch.linspace(0.0, 1.0, steps, dtype=start.dtype).view(1, -1, 1)
    return start.unsqueeze(1) + fraction * (end - start).unsqueeze(1)


def colour_sweep(coverage: torch.Tensor, background: torch.Tensor, stroke: torch.Tensor, part: str,
                 start: torch.Tensor, end: torch.Tensor, steps: int) -> torch.Tensor:
    """The images with ``part`` ("background" or "stroke") moved from ``start`` to ``end`` in
    ``steps`` steps, the other part and the coverage kept: (N, steps, 3, S, S)."""
    colours = colour_steps(start, end, steps)
    count, size = coverage.shape[0], coverage.shape[-1]
    flat = colours.reshape(-1, 3)
    kept = (stroke if part == "background" else background).repeat_interleave(steps, dim=0)
    coverage_per_step = coverage.repeat_interleave(steps, dim=0)
    painted = repaint(coverage_per_step, flat, kept) if part == "background" else repaint(coverage_per_step, kept, flat)
    return painted.view(count, steps, 3, size, size)


def stroke_masks(coverage: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Binary digit masks, (N, S, S) bool: coverage above ``threshold``."""
    return coverage[:, 0] > threshold

