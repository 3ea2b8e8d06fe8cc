"""The seed's sanity check (its Fig. 9): four model-free outputs along a sweep, of which the
permutation test must call i.i.d. noise not significant and a sine, a parabola and a step significant.
"""

from dataclasses import dataclass

import numpy as np

from trainers.explain.gradient import permutation_test

# The property runs over [0, 1]; each relationship spans about one unit of output there.
RELATIONSHIPS = ("noise", "sine", "parabola", "step")
EXPECTED_SIGNIFICANT = {"noise": False, "sine": True, "parabola": True, "step": True}


def synthetic_output(name: str, steps: int, seed: int = 0) -> np.ndarray:
    """The output of relationship ``name`` at ``steps`` evenly spaced property values in [0, 1].

    noise: i.i.d. standard normal (seeded); sine: sin(2 pi x); parabola: (2x - 1)^2; step: 0 below
    x = 0.5, 1 from there.
    """
    x = np.linspace(0.0, 1.0, steps)
    if name == "noise":
        return np.random.default_rng(seed).standard_normal(steps)
    if name == "sine":
        return np.sin(2 * np.pi * x)
    if name == "parabola":
        return (2 * x - 1) ** 2
    if name == "step":
        return (x >= 0.5).astype(np.float64)
    raise ValueError(f"unknown synthetic relationship {name!r} (choose one of {', '.join(RELATIONSHIPS)})")


@dataclass(frozen=True)
class SanityVerdict:
    relationship: str
    statistic: float  # E[|grad_X|] per step
    p_value: float
    significant: bool
    expected_significant: bool

    @property
    def passed(self) -> bool:
        return self.significant == self.expected_significant


def sanity_verdicts(steps: int = 64, permutations: int = 10_000, seed: int = 0, level: float = 0.01) -> list[SanityVerdict]:
    """Test each of RELATIONSHIPS and say whether the verdict is the expected one."""
    verdicts = []
    for name in RELATIONSHIPS:
        test = permutation_test(synthetic_output(name, steps, seed), permutations, seed, level)
        verdicts.append(SanityVerdict(name, test.overall_statistic, test.overall_p_value, test.overall_significant,
                                      EXPECTED_SIGNIFICANT[name]))
    return verdicts
