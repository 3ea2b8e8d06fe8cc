"""Finite-difference weights on any grid (Fornberg 1988, the algorithm findiff implements), and the
matrix that turns a sweep's N outputs into their derivative at every step.

Seed 004 estimates d output / d property along a sweep with Fornberg's weights: central stencils
inside the sweep, one-sided ones at its two ends, all of the same accuracy order.
"""

from collections.abc import Sequence

import numpy as np

ACCURACY_ORDERS = (2, 4, 6)


def fornberg_weights(grid: Sequence[float], at: float, order: int) -> np.ndarray:
    """The weights w with sum_i w_i f(grid_i) ~ f^(order)(at), exact for polynomials of degree < len(grid).

    Args:
        grid: distinct sample points (any spacing, any order).
        at: where the derivative is wanted.
        order: the derivative's order (0 interpolates).

    Returns:
        (len(grid),) float64 weights.
    """
    points = np.asarray(grid, dtype=np.float64)
    if order < 0 or len(points) <= order:
        raise ValueError(f"a derivative of order {order} needs at least {order + 1} points (got {len(points)})")
    weights = np.zeros((len(points), order + 1))
    weights[0, 0] = 1.0
    previous_product, previous_distance = 1.0, points[0] - at
    for i in range(1, len(points)):
        product, distance_before = 1.0, previous_distance
        previous_distance = points[i] - at
        top = min(i, order)
        for j in range(i):
            gap = points[i] - points[j]
            product *= gap
            if j == i - 1:  # the new point's weights come from the last point's, before those change
                for k in range(top, 0, -1):
                    weights[i, k] = previous_product * (k * weights[i - 1, k - 1] - distance_before * weights[i - 1, k]) / product
                weights[i, 0] = -previous_product * distance_before * weights[i - 1, 0] / product
            for k in range(top, 0, -1):
                weights[j, k] = (previous_distance * weights[j, k] - k * weights[j, k - 1]) / gap
            weights[j, 0] = previous_distance * weights[j, 0] / gap
        previous_product = product
    return weights[:, order]


def derivative_stencils(steps: int, spacing: float = 1.0, accuracy: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The first-derivative stencil of every step: which steps it reads and with which weights.

    Every stencil spans ``accuracy + 1`` consecutive steps: centred on step i inside the sweep,
    shifted to stay inside it near the ends (one-sided there), so every estimate has the same
    accuracy order.

    Args:
        steps: N, the sweep's length (at least ``accuracy + 1``).
        spacing: the property's change per step (1: derivatives per step, as the seed reads them).
        accuracy: the error order in the spacing, one of ACCURACY_ORDERS.

    Returns:
        starts: (N,) int, the first step each stencil reads; weights: (N, accuracy + 1) float64.
    """
    if accuracy not in ACCURACY_ORDERS:
        raise ValueError(f"accuracy must be one of {ACCURACY_ORDERS} (got {accuracy})")
    width = accuracy + 1
    if steps < width:
        raise ValueError(f"accuracy {accuracy} needs at least {width} steps (got {steps})")
    starts = np.clip(np.arange(steps) - accuracy // 2, 0, steps - width)
    weights = np.stack([fornberg_weights(np.arange(start, start + width) - step, 0.0, 1) for step, start in enumerate(starts)])
    return starts, weights / spacing


def derivative_matrix(steps: int, spacing: float = 1.0, accuracy: int = 2) -> np.ndarray:
    """D with (D @ y)[i] ~ dy/dx at step i, for y sampled at x_i = i * spacing: the stencils of
    ``derivative_stencils`` as a (steps, steps) banded matrix."""
    starts, weights = derivative_stencils(steps, spacing, accuracy)
    matrix = np.zeros((steps, steps))
    for step, (start, row) in enumerate(zip(starts, weights)):
        matrix[step, start : start + len(row)] = row
    return matrix


def differentiate(outputs: np.ndarray, stencils: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """d outputs / dx along the last axis, (..., N) -> (..., N), from ``derivative_stencils``.

    Inside the sweep every step has the same centred stencil, applied as accuracy + 1 shifted
    slices (views, no copies); only the few steps at the ends are read one by one.
    """
    starts, weights = stencils
    steps, width = weights.shape
    half = (width - 1) // 2
    derivative = np.empty(outputs.shape)
    inside = slice(half, steps - half)
    derivative[..., inside] = 0.0
    for offset in range(width):
        derivative[..., inside] += weights[half, offset] * outputs[..., offset : steps - width + 1 + offset]
    for step in (*range(half), *range(steps - half, steps)):
        derivative[..., step] = outputs[..., starts[step] : starts[step] + width] @ weights[step]
    return derivative
