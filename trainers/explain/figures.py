"""The explanations as PNG figures, drawn with PIL (matplotlib is not among genint's dependencies):
a sweep's outputs against its steps beside the permutation null, and GradCAM overlays."""

import io

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

_PANEL_PX, _MARGIN_PX, _TITLE_PX = (360, 220), 28, 18
_LINES = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127)]
_INK, _GRID, _NULL = (20, 20, 20), (225, 225, 225), (150, 170, 200)


def _frame(draw: ImageDraw.ImageDraw, left: int, top: int, title: str, low: float, high: float) -> None:
    width, height = _PANEL_PX
    draw.text((left, top - _TITLE_PX + 2), title, fill=_INK, font=ImageFont.load_default())
    draw.rectangle([left, top, left + width, top + height], outline=_INK)
    for fraction in (0.25, 0.5, 0.75):
        y = top + height * fraction
        draw.line([left + 1, y, left + width - 1, y], fill=_GRID)
    draw.text((left + 2, top + 2), f"{high:.3g}", fill=_INK)
    draw.text((left + 2, top + height - 12), f"{low:.3g}", fill=_INK)


def sweep_figure_png(outputs: np.ndarray, null: np.ndarray, observed: float, p_value: float, title: str, output_label: str) -> bytes:
    """A PNG of two panels: up to eight sweeps' outputs against the step, and the histogram of the
    shuffled mean statistics with the observed one marked.

    Args:
        outputs: (B, N) the sweeps' outputs. null: (K,) shuffled statistics. observed, p_value: the test's.
    """
    width, height = _PANEL_PX
    image = Image.new("RGB", (3 * _MARGIN_PX + 2 * width, 2 * _MARGIN_PX + height + _TITLE_PX + 14), "white")
    draw = ImageDraw.Draw(image)
    top = _MARGIN_PX + _TITLE_PX
    shown = outputs[: len(_LINES)]
    low, high = float(shown.min()), float(shown.max())
    span = (high - low) or 1.0
    left = _MARGIN_PX
    _frame(draw, left, top, f"{title}: {output_label} along the sweep", low, high)
    steps = shown.shape[1]
    for row, colour in zip(shown, _LINES):
        points = [(left + width * i / max(steps - 1, 1), top + height * (1 - (value - low) / span)) for i, value in enumerate(row)]
        draw.line(points, fill=colour, width=2)
    draw.text((left, top + height + 2), f"step 0 .. {steps - 1}", fill=_INK)
    left = 2 * _MARGIN_PX + width
    edges_low, edges_high = min(float(null.min()), observed), max(float(null.max()), observed)
    bins = np.linspace(edges_low, edges_high + 1e-12, 41)
    counts, _ = np.histogram(null, bins=bins)
    _frame(draw, left, top, f"E[|grad|] under shuffling (K={len(null)}), observed p={p_value:.4g}", 0, int(counts.max()))
    bar = width / len(counts)
    for index, count in enumerate(counts):
        x = left + index * bar
        draw.rectangle([x, top + height * (1 - count / max(counts.max(), 1)), x + bar - 1, top + height], fill=_NULL)
    marker = left + width * (observed - bins[0]) / (bins[-1] - bins[0])
    draw.line([marker, top, marker, top + height], fill=_LINES[3], width=2)
    draw.text((left, top + height + 2), f"{bins[0]:.3g} .. {bins[-1]:.3g} (observed {observed:.3g}, red)", fill=_INK)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _heat(maps: np.ndarray) -> np.ndarray:
    """[0, 1] maps as RGB (blue, through green and yellow, to red), (..., 3) uint8."""
    red = np.clip(1.5 - np.abs(4 * maps - 3), 0, 1)
    green = np.clip(1.5 - np.abs(4 * maps - 2), 0, 1)
    blue = np.clip(1.5 - np.abs(4 * maps - 1), 0, 1)
    return (np.stack([red, green, blue], axis=-1) * 255).astype(np.uint8)


def overlay_figure_png(images: torch.Tensor, maps: torch.Tensor, title: str, captions: list[str] | None = None,
                       per_row: int = 8, scale: int = 3, alpha: float = 0.5) -> bytes:
    """A PNG grid: each image above its GradCAM overlay (the map blended over the image).

    Args:
        images: (B, 3, S, S) in [0, 1]. maps: (B, S, S) in [0, 1]. captions: one short line per image.
    """
    pixels = (images.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    blended = ((1 - alpha) * pixels + alpha * _heat(maps.numpy())).round().astype(np.uint8)
    side = images.shape[-1] * scale
    rows = -(-len(images) // per_row)
    cell_w, cell_h = side + 6, 2 * side + 20
    canvas = Image.new("RGB", (per_row * cell_w + 6, rows * cell_h + _TITLE_PX + 6), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((6, 4), title, fill=_INK, font=ImageFont.load_default())
    for index in range(len(images)):
        x, y = 6 + (index % per_row) * cell_w, _TITLE_PX + 6 + (index // per_row) * cell_h
        for offset, picture in ((0, pixels[index]), (side, blended[index])):
            canvas.paste(Image.fromarray(picture).resize((side, side), Image.Resampling.NEAREST), (x, y + offset))
        if captions:
            draw.text((x, y + 2 * side + 2), captions[index][:12], fill=_INK)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()
