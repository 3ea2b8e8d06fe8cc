"""The expected property gradient magnitude E[|grad_X|] (seed 004, Eq. 2) and its permutation test
(Algorithm 1), vectorised over the permutations.

A sweep's outputs y_0..y_{N-1} are the model's answers at N evenly spaced settings of the property.
E[|grad_X|] is the mean over the steps of |dy/dx|, the derivative from Fornberg's finite differences.
The test shuffles the outputs K times: shuffling keeps their values and destroys their order, so the
shuffled statistics are what E[|grad_X|] looks like when the output does not depend on the property.
The test is two-sided (the seed's Fig. 9n): a smooth dependence scores below the shuffles (neighbours
agree), an alternating one above them.
"""

from dataclasses import dataclass

import numpy as np

from trainers.explain.fornberg import derivative_stencils, differentiate

# Shuffled copies built at once: bounds the working memory to about 32 MB of float64 per array of a chunk.
_CHUNK_VALUES = 4_000_000
_TIE_TOLERANCE = 1e-9


def expected_gradient_magnitude(outputs: np.ndarray, spacing: float = 1.0, accuracy: int = 2) -> np.ndarray:
    """E[|grad_X|] of each sweep: the mean over its steps of |d output / d property|.

    Args:
        outputs: (..., N) outputs along the last axis, one sweep per row.
        spacing: the property's change per step (1: per step).
        accuracy: the finite differences' accuracy order (2, 4 or 6).

    Returns:
        (...) one value per sweep.
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    return np.abs(differentiate(outputs, derivative_stencils(outputs.shape[-1], spacing, accuracy))).mean(axis=-1)


@dataclass(frozen=True)
class PermutationTest:
    """The observed statistics, their two-sided p-values and the shuffled statistics' means.

    ``per_sweep_*`` hold one entry per sweep; ``overall_*`` is the test of the sweeps' mean
    statistic, each permutation reordering the steps of every sweep alike.
    """

    per_sweep_statistic: np.ndarray  # (B,)
    per_sweep_p_value: np.ndarray  # (B,)
    per_sweep_null_mean: np.ndarray  # (B,)
    overall_statistic: float
    overall_p_value: float
    overall_null: np.ndarray  # (K,) the shuffled mean statistics, for plots
    permutations: int
    level: float

    @property
    def overall_significant(self) -> bool:
        return self.overall_p_value < self.level

    @property
    def per_sweep_significant(self) -> np.ndarray:
        return self.per_sweep_p_value < self.level


def two_sided_p_value(observed: np.ndarray, null: np.ndarray, tolerance: np.ndarray | float = 0.0) -> np.ndarray:
    """2 x the smaller tail's share of the shuffles at least as extreme as ``observed`` (each tail
    counts the observation itself, so p >= 2 / (K + 1)).

    Args:
        observed: (...) statistics. null: (K, ...) shuffled statistics, the same trailing shape.
        tolerance: shuffled statistics this close to the observed one count in both tails (rounding:
            a constant output must get p = 1).
    """
    count = null.shape[0]
    below = (1 + (null <= observed + tolerance).sum(axis=0)) / (count + 1)
    above = (1 + (null >= observed - tolerance).sum(axis=0)) / (count + 1)
    return np.minimum(1.0, 2 * np.minimum(below, above))


def permutation_test(outputs: np.ndarray, permutations: int = 10_000, seed: int = 0, level: float = 0.01,
                     spacing: float = 1.0, accuracy: int = 2) -> PermutationTest:
    """Algorithm 1 of seed 004 with E[|grad_X|] as the statistic, for each sweep and for their mean.

    Args:
        outputs: (B, N) B sweeps of N steps (a single (N,) sweep is taken as B = 1).
        permutations: K, the shuffles of each sweep.
        seed: fixes the shuffles.
        level: delta, the significance level (p < level is significant).
        spacing, accuracy: as in ``expected_gradient_magnitude``.
    """
    sweeps = np.atleast_2d(np.asarray(outputs, dtype=np.float64))
    count, steps = sweeps.shape
    stencils = derivative_stencils(steps, spacing, accuracy)
    observed = np.abs(differentiate(sweeps, stencils)).mean(axis=-1)
    rng = np.random.default_rng(seed)
    null = np.empty((permutations, count))
    chunk = max(1, _CHUNK_VALUES // (count * steps))
    for start in range(0, permutations, chunk):
        size = min(chunk, permutations - start)
        # argsort of uniform keys: `size` uniform permutations in one call. Each reorders the steps of
        # every sweep alike: under the null the steps are exchangeable in every sweep at once, and one
        # sort serves all B sweeps (sorting is most of the cost).
        order = np.argsort(rng.random((size, steps)), axis=-1)
        shuffled = sweeps[:, order]  # (B, size, N)
        null[start : start + size] = np.abs(differentiate(shuffled, stencils)).mean(axis=-1).T
    overall_null = null.mean(axis=1)
    overall = float(observed.mean())
    # Rounding in the derivative is relative to the outputs' size: equal up to that, a tie.
    tolerance = _TIE_TOLERANCE * (np.abs(sweeps).max(axis=1) + observed) / spacing
    return PermutationTest(
        per_sweep_statistic=observed, per_sweep_p_value=two_sided_p_value(observed, null, tolerance),
        per_sweep_null_mean=null.mean(axis=0), overall_statistic=overall,
        overall_p_value=float(two_sided_p_value(np.array(overall), overall_null, float(tolerance.mean()))),
        overall_null=overall_null, permutations=permutations, level=level)
