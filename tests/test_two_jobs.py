"""Two `genint run` jobs started at once on one machine, each on its own embedded Ray: both finish,
neither prints a traceback or Ray's own output, and neither job's Ray processes found the other's
cluster (Ray Train's placement-group cleaner looks for "its" cluster when it is not told which)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.job_helpers import assert_store_exact, job_assets, tiny_job

pytestmark = pytest.mark.slow
DISCOVERY_ERROR = "Found multiple active Ray instances"


def test_two_embedded_jobs_at_once_both_finish_quietly_each_on_its_own_cluster(tmp_path):
    assets = job_assets(tmp_path / "assets")
    jobs = {}
    for name in ("first", "second"):
        config = tiny_job(assets, tmp_path / name / "out", f"two-{name}", seeds_per_class=1,
                          interventional={"batch_size": 2, "when_short": "reuse"},
                          train={"max_steps": 2, "checkpoint_every_steps": 100})
        (tmp_path / name).mkdir()
        (tmp_path / name / "job.yaml").write_text(config.model_dump_json())  # JSON is YAML
        jobs[name] = config
    # No RAY_ADDRESS: each job starts its own Ray. Wide lines: the printed log directory stays on one.
    env = {**{key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}, "COLUMNS": "200"}
    processes = {name: subprocess.Popen([sys.executable, "-m", "cluster.cli", "run", "job.yaml"], cwd=tmp_path / name,
                                        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for name in jobs}
    try:
        outputs = {name: process.communicate(timeout=900) for name, process in processes.items()}
    finally:
        for process in processes.values():
            process.kill()

    logs_dirs = set()
    for name, (stdout, stderr) in outputs.items():
        assert processes[name].returncode == 0, stderr
        assert "Traceback" not in stderr and DISCOVERY_ERROR not in stderr, stderr
        # Ray's own lines (Ray Train's echo of every report, the workers' torch and DeepSpeed lines) stay in its logs.
        assert "Reporting training result" not in stdout + stderr and "(RayTrainWorker" not in stdout + stderr
        assert "trained: 2 steps" in stdout, stdout
        assert_store_exact(jobs[name].store_dir)
        logs_dir = Path(re.search(r"^ray logs: (\S+)", stdout, re.MULTILINE).group(1))
        logs = [path for path in logs_dir.rglob("*") if path.is_file()]
        assert any("JobController" in path.read_text(errors="replace") for path in logs)  # the job's own session
        assert not [path for path in logs if DISCOVERY_ERROR in path.read_text(errors="replace")]
        logs_dirs.add(logs_dir)
    assert len(logs_dirs) == 2
