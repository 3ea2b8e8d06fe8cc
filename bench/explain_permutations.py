"""Wall time of seed 004's permutation test, vectorised (``trainers.explain.gradient.permutation_test``),
against Algorithm 1 as the paper writes it (one shuffle and one E[|grad|] per loop iteration), in one run.

Both take K = 10,000 shuffles of a 64-step sweep on one core (BLAS and torch limited to one thread);
runs alternate (loop, vectorised, ...) and the median of ``--repeats`` is reported. The vectorised
test is also timed on 32 sweeps at once (the Colored Digits setting: 32 validation digits per
classifier). Both agree on the p-value of a sine and of noise to within the shuffles' own spread.
Goal (issue 18): K = 10,000 for 64 steps in under a second on one core.

    python bench/explain_permutations.py [--repeats 5] [--steps 64] [--permutations 10000]
"""

import argparse
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from trainers.explain.fornberg import derivative_matrix
from trainers.explain.gradient import permutation_test, two_sided_p_value

GOAL_S = 1.0


def loop_test(outputs: np.ndarray, permutations: int, seed: int) -> float:
    """Algorithm 1 of seed 004, one shuffle at a time (the same Fornberg derivative matrix, built
    once): the two-sided p-value."""
    rng = np.random.default_rng(seed)
    derivative = derivative_matrix(len(outputs))
    observed = np.abs(derivative @ outputs).mean()
    null = np.array([np.abs(derivative @ rng.permutation(outputs)).mean() for _ in range(permutations)])
    return float(two_sided_p_value(np.array(observed), null[:, None])[0])


def timed(function) -> tuple[float, object]:
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--permutations", type=int, default=10_000)
    args = parser.parse_args()
    x = np.linspace(0, 1, args.steps)
    sine, noise = np.sin(2 * np.pi * x), np.random.default_rng(1).standard_normal(args.steps)
    batch = np.sin(2 * np.pi * x[None] + np.arange(32)[:, None])
    times: dict[str, list[float]] = {"loop_s": [], "vectorised_s": [], "vectorised_32_sweeps_s": []}
    with threadpool_limits(1):
        for repeat in range(args.repeats):
            seconds, loop_p = timed(lambda: (loop_test(sine, args.permutations, repeat), loop_test(noise, args.permutations, repeat)))
            times["loop_s"].append(seconds / 2)
            seconds, tests = timed(lambda: (permutation_test(sine, args.permutations, repeat), permutation_test(noise, args.permutations, repeat)))
            times["vectorised_s"].append(seconds / 2)
            seconds, _ = timed(lambda: permutation_test(batch, args.permutations, repeat))
            times["vectorised_32_sweeps_s"].append(seconds)
            vector_p = (tests[0].overall_p_value, tests[1].overall_p_value)
            print(f"repeat {repeat}: loop {times['loop_s'][-1]:.3f} s, vectorised {times['vectorised_s'][-1]:.3f} s, "
                  f"32 sweeps {times['vectorised_32_sweeps_s'][-1]:.3f} s; p (sine, noise): loop {loop_p[0]:.4g}, {loop_p[1]:.4g}, "
                  f"vectorised {vector_p[0]:.4g}, {vector_p[1]:.4g}")
    medians = {name: statistics.median(values) for name, values in times.items()}
    speedup = medians["loop_s"] / medians["vectorised_s"]
    goal_met = medians["vectorised_s"] < GOAL_S
    print("result: " + " ".join(f"{name}={value:.4f}" for name, value in medians.items())
          + f" speedup={speedup:.1f} steps={args.steps} permutations={args.permutations} goal_met={str(goal_met).lower()}")


if __name__ == "__main__":
    main()
