"""Wall time of the ``genint`` commands that should answer at once, against a bare interpreter.

Each command runs as its own process, exactly as the ``genint`` script would (``cluster.cli.main``
from this checkout), timed from spawn to exit: ``genint --help``, ``genint config check
configs/quickstart.yaml`` and a usage error (``genint run`` without a config). Baselines in the
same run: ``python -c pass`` (the interpreter's own start) and ``python -c "import torch"`` (what
the commands above must not pay). Runs alternate command by command, so drift in the load of a
shared machine spreads over all of them; the median of ``--repeats`` is reported.
Goal (issue 12): help and config check under 1 s each.

    python bench/cli_startup.py [--repeats 5] [--no-torch]
"""

import argparse
import statistics
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 1.0
# The console script's body, run from this checkout (not whatever `genint` is installed).
GENINT = [sys.executable, "-c", "import sys; from cluster.cli import main; sys.exit(main())"]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
# What `make quickstart` writes before the config validates (it must be a directory).
QUICKSTART_SOURCE = Path("runs/quickstart/digits-imagefolder")


def commands(with_torch: bool) -> dict[str, tuple[list[str], int]]:
    """Name -> (argv, the exit code it must give)."""
    timed = {
        "help_s": (GENINT + ["--help"], 0),
        "config_check_s": (GENINT + ["config", "check", str(QUICKSTART)], 0),
        "usage_error_s": (GENINT + ["run"], 2),
        "python_s": ([sys.executable, "-c", "pass"], 0),
    }
    if with_torch:
        timed["import_torch_s"] = ([sys.executable, "-c", "import torch"], 0)
    return timed


def wall_time_s(argv: list[str], expected_code: int, workdir: Path) -> float:
    """Seconds from spawn to exit of ``argv`` run in ``workdir`` with this checkout importable;
    it must exit as expected."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=workdir, env=environment, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != expected_code:
        sys.exit(f"{' '.join(argv[-3:])}: exit {done.returncode}, expected {expected_code}: {done.stderr.strip()[-300:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-torch", action="store_true", help="skip the `import torch` baseline")
    args = parser.parse_args()

    timed = commands(with_torch=not args.no_torch)
    times: dict[str, list[float]] = {name: [] for name in timed}
    with tempfile.TemporaryDirectory(prefix="genint-cli-startup-") as workdir:
        # The quickstart's relative paths resolve against the working directory.
        (Path(workdir) / QUICKSTART_SOURCE).mkdir(parents=True)
        for argv, code in timed.values():
            wall_time_s(argv, code, Path(workdir))  # warm the page cache, so every timed run reads from memory
        for _ in range(args.repeats):
            for name, (argv, code) in timed.items():
                times[name].append(wall_time_s(argv, code, Path(workdir)))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:16} median {medians[name]:.3f} s  (runs: {', '.join(f'{v:.2f}' for v in values)})")
    goal_met = medians["help_s"] < GOAL_S and medians["config_check_s"] < GOAL_S
    print("result: " + " ".join(f"{name}={value:.3f}" for name, value in medians.items()) + f" goal_met={goal_met}")


if __name__ == "__main__":
    main()
