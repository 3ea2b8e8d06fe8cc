"""The causal bound per strategy as a PNG bar chart (the paper's Fig. 5/6 shows the same values
as curves), drawn with PIL: matplotlib is not among genint's dependencies.

One horizontal bar per strategy in the order given, each ending at its value; the axis spans the
values (they are close together and negative, so bars from zero would all look alike). The
chosen strategy's bar is drawn in another colour.
"""

import io

from PIL import Image, ImageDraw, ImageFont

_ROW_PX, _LABEL_PX, _BAR_PX, _MARGIN_PX, _TICKS = 22, 260, 420, 16, 5
_BAR, _CHOSEN, _INK, _GRID = (120, 150, 190), (214, 110, 40), (20, 20, 20), (220, 220, 220)


def bound_figure_png(labels: list[str], values: list[float], chosen: int, title: str) -> bytes:
    """A PNG of one bar per ``labels[i]`` ending at ``values[i]``; bar ``chosen`` highlighted.

    Args:
        labels: strategy names, one per bar (top to bottom).
        values: log P(x|z) of each, the same length.
        chosen: index of the bar to highlight.
        title: the line above the chart.
    """
    font = ImageFont.load_default()
    low, high = min(values), max(values)
    pad = (high - low) * 0.1 or 0.05  # one strategy, or all equal: still a visible bar
    start, stop = low - pad, high + pad
    width = _MARGIN_PX * 2 + _LABEL_PX + _BAR_PX + 70
    top = _MARGIN_PX * 2 + 14
    height = top + _ROW_PX * len(values) + 40
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((_MARGIN_PX, _MARGIN_PX), title, fill=_INK, font=font)
    left = _MARGIN_PX + _LABEL_PX

    def x_of(value: float) -> float:
        return left + (value - start) / (stop - start) * _BAR_PX

    bottom = top + _ROW_PX * len(values)
    for tick in range(_TICKS + 1):
        value = start + (stop - start) * tick / _TICKS
        draw.line([(x_of(value), top), (x_of(value), bottom)], fill=_GRID)
        draw.text((x_of(value) - 18, bottom + 6), f"{value:.3f}", fill=_INK, font=font)
    draw.text((left, bottom + 22), "log P(x|z) (higher: tighter causal bound)", fill=_INK, font=font)
    for row, (label, value) in enumerate(zip(labels, values)):
        y = top + row * _ROW_PX
        colour = _CHOSEN if row == chosen else _BAR
        draw.rectangle([left, y + 4, x_of(value), y + _ROW_PX - 4], fill=colour)
        draw.text((_MARGIN_PX, y + 5), label[:40] + (" (chosen)" if row == chosen else ""), fill=_INK, font=font)
        draw.text((x_of(value) + 4, y + 5), f"{value:.4f}", fill=_INK, font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
