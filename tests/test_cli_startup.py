"""The CLI answers at once: importing it, validating the shipped configs, ``genint config check``,
help and usage errors load none of the heavy libraries; the commands that use them import them.

Each check runs in a fresh interpreter, so nothing an earlier test imported counts. How fast the
commands answer is measured by bench/cli_startup.py (timing is no test on a shared machine).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENINT = Path(sys.executable).parent / "genint"
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
COLORED_DIGITS = ROOT / "configs" / "experiments" / "colored-digits.yaml"
# What validating a config must never pay for (seconds each on a small machine).
HEAVY = ("torch", "torchvision", "ray", "nvidia.dali", "sklearn", "deepspeed", "webdataset", "scipy")

LIGHT_COMMANDS = f"""
import json, sys
from cluster.cli import main
from cluster.config import load_config
from experiments.registry import load_experiment

job = load_config({str(QUICKSTART)!r})
experiment = load_experiment({str(COLORED_DIGITS)!r})
codes = [main(["config", "check", {str(QUICKSTART)!r}])]
for argv in (["--help"], ["run"], ["config", "check"]):
    try:
        codes.append(main(argv))
    except SystemExit as exit_:  # argparse's help and usage errors
        codes.append(exit_.code)
print(json.dumps({{"job": job.name, "experiment": experiment.kind, "codes": codes,
                  "loaded": sorted(name for name in {HEAVY!r} if name in sys.modules)}}))
"""


def _run(argv: list[str], workdir: Path) -> subprocess.CompletedProcess:
    """``argv`` in ``workdir``, importing this checkout; the quickstart's data directory exists there
    (its config checks that ``shards.prepare.original.source`` is a directory, relative to the cwd)."""
    (workdir / "runs" / "quickstart" / "digits-imagefolder").mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(argv, cwd=workdir, env=environment, capture_output=True, text=True, timeout=300)


def test_configs_help_and_usage_errors_load_no_heavy_library(tmp_path: Path):
    done = _run([sys.executable, "-c", LIGHT_COMMANDS], tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert (report["job"], report["experiment"]) == ("quickstart", "colored_digits")
    assert report["codes"] == [0, 0, 2, 2]  # config check, --help, two usage errors
    assert report["loaded"] == [], f"importing or validating configs loaded {report['loaded']}"


def test_genint_help_exits_zero_and_lists_the_commands(tmp_path: Path):
    done = _run([str(GENINT), "--help"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    for command in ("run", "config", "submit", "scale", "top"):
        assert command in done.stdout
