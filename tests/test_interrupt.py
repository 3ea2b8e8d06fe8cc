"""Ctrl-C in `genint run`: it exits 130 without hanging, commits no partial shard, and a rerun
resumes generation from the manifest and training from its checkpoint."""

import os
import signal
import subprocess
import sys

import pytest

from cluster.run import run_job
from shards.writer import TEMP_SUFFIX
from tests.job_helpers import assert_store_exact, job_assets, tiny_job, wait_for

pytestmark = pytest.mark.slow


def test_interrupted_run_exits_130_and_a_rerun_resumes(tmp_path):
    # Training needs every planned interventional sample (50 steps x 8 = 400), so the job is
    # still running when its first checkpoint appears and the interrupt is sent.
    config = tiny_job(job_assets(tmp_path / "assets"), tmp_path / "out", "interrupted", seeds_per_class=20,
                      interventional={"batch_size": 8, "when_short": "wait"},
                      train={"max_steps": 50, "checkpoint_every_steps": 2})
    (tmp_path / "job.yaml").write_text(config.model_dump_json())  # JSON is YAML
    stream_dir = config.store_dir / "interventional"
    with open(tmp_path / "run.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "cluster.cli", "run", "job.yaml"], cwd=tmp_path,
                                   stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            wait_for(lambda: process.poll() is not None or (config.output_dir / "train" / "checkpoints" / "latest").is_file(),
                     "the first checkpoint")
            assert process.poll() is None, (tmp_path / "run.log").read_text()
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=300)
        finally:
            process.kill()
    output = (tmp_path / "run.log").read_text()
    assert code == 130 and "genint: interrupted" in output, output
    interrupted_keys = assert_store_exact(config.store_dir)  # whatever was committed is whole

    result = run_job(config)
    assert result.status.train.starts[0].step > 0  # resumed from the interrupted run's checkpoint
    assert result.train.steps == 50 and result.status.phase == "finished"
    keys = assert_store_exact(config.store_dir, planned=10 * 20 * 2)
    assert set(interrupted_keys) <= set(keys)
    assert not list(stream_dir.glob(f"*{TEMP_SUFFIX}"))
