"""`genint submit | status | logs | stop | list` against a real Ray head on loopback, token auth on."""

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from cluster.examples import write_digits_imagefolder
from cluster.jobs import job_info
from tests.conftest import free_ports

pytestmark = pytest.mark.slow
VENV_BIN = Path(sys.executable).parent


def genint(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The real CLI in its own process (Ray caches auth state per process)."""
    return subprocess.run([str(VENV_BIN / "genint"), *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def head():
    """A Ray head (``ray start --head --block``) in its own process group, so stopping it touches
    no other Ray on this machine; yields the client environment (address, token, empty HOME), the
    temporary root and the head's cluster addresses (what `genint scale` / `top JOB` take): its GCS
    and its Ray client server."""
    root = Path(tempfile.mkdtemp(prefix="gj", dir="/tmp"))  # Ray's socket paths must stay short
    token = secrets.token_hex(16)
    gcs, dashboard, client_server, agent = free_ports(4)
    # genint must be on the PATH of the job's driver, as in the deploy image
    head_env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
                "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    with open(root / "head.log", "w") as log:
        process = subprocess.Popen(
            [str(VENV_BIN / "ray"), "start", "--head", "--block", f"--port={gcs}", "--dashboard-host=127.0.0.1",
             f"--dashboard-port={dashboard}", f"--ray-client-server-port={client_server}",
             f"--dashboard-agent-listen-port={agent}", "--num-cpus=2", f"--temp-dir={root / 't'}"],
            env=head_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    (root / "home").mkdir()
    client_env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
                  "RAY_ADDRESS": f"http://127.0.0.1:{dashboard}", "RAY_AUTH_TOKEN": token, "HOME": str(root / "home")}
    try:
        deadline = time.monotonic() + 90
        while genint("list", env=client_env).returncode != 0:
            assert process.poll() is None and time.monotonic() < deadline, (root / "head.log").read_text()[-2000:]
            time.sleep(2)
        yield client_env, root, {"gcs": f"127.0.0.1:{gcs}", "ray client": f"ray://127.0.0.1:{client_server}"}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        os.killpg(process.pid, signal.SIGKILL)  # whatever of the head outlived the grace period
        process.wait()
        shutil.rmtree(root, ignore_errors=True)


def _tiny_config(root: Path) -> Path:
    """Prepare digits into shards and train two steps; absolute paths, since the job runs in Ray's copy
    of its working directory."""
    write_digits_imagefolder(root / "digits", image_size=16)
    config = {
        "name": "tiny",
        "output_dir": str(root / "out"),
        "shards": {"max_samples_per_shard": 300, "prepare": {"original": {"source": str(root / "digits"), "unit_size": 500}}},
        "datagen": {"actors": 0},
        "train": {"model": "resnet18", "num_classes": 10, "max_steps": 2, "data": {"crop_size": 16, "resize_size": 16},
                  "streams": {"original": {"batch_size": 8}}},
    }
    path = root / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _wait_for(job: str, env: dict, wanted: set[str], timeout: float = 150) -> str:
    """Poll in this process (a genint process costs seconds of imports); return the final CLI status line."""
    with pytest.MonkeyPatch.context() as patch:
        for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN"):
            patch.setenv(key, env[key])
        deadline = time.monotonic() + timeout
        while job_info(job, None).status.value not in wanted and time.monotonic() < deadline:
            time.sleep(1)
    status = genint("status", job, env=env)
    assert status.returncode == 0, status.stderr
    return status.stdout


def test_submit_succeeds_and_logs_show_progress(head):
    env, root, _ = head
    config = _tiny_config(root)
    bad = genint("submit", str(config), "--set", "train.streams.original.batch_size=-1", env=env)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "train.streams.original.batch_size must be >= 0 (got -1)" in bad.stderr

    submitted = genint("submit", str(config), env=env)
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip().splitlines()[-1]
    assert job.startswith("tiny-")

    # The job's own run takes about a minute alone and three beside another test process.
    final = _wait_for(job, env, {"SUCCEEDED", "FAILED", "STOPPED"}, timeout=420)
    logs = genint("logs", job, "--follow", env=env)  # follow returns once the job has ended
    assert final.startswith(f"{job}: SUCCEEDED"), final + logs.stdout[-3000:]
    assert "1797" in logs.stdout and "original" in logs.stdout  # the run's summary of the prepared stream
    assert genint("logs", job, env=env).stdout.strip() == logs.stdout.strip()
    assert (root / "out" / "shards" / "original" / "manifest.jsonl").is_file()
    listed = genint("list", env=env)
    assert job in listed.stdout and "SUCCEEDED" in listed.stdout


def test_stop_ends_a_long_job(head):
    env, root, _ = head
    submitted = genint("submit", str(root / "job.yaml"), "--set", "train.max_steps=1000000",
                       "--set", f"output_dir={root / 'long'}", env=env)
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.strip().splitlines()[-1]
    assert _wait_for(job, env, {"RUNNING"}, timeout=60).startswith(f"{job}: RUNNING")
    stopped = genint("stop", job, env=env)
    assert stopped.returncode == 0 and stopped.stdout.strip() == f"{job}: stop requested"
    assert _wait_for(job, env, {"STOPPED", "FAILED", "SUCCEEDED"}, timeout=60).startswith(f"{job}: STOPPED")


@pytest.mark.parametrize("case", ["wrong address", "missing token", "wrong token", "unknown job"])
def test_errors_are_one_line(head, case):
    env, _, _ = head
    env = dict(env)
    expected = {
        "wrong address": "cannot reach a Ray dashboard at http://127.0.0.1:",
        "missing token": "requires a token and none was sent: set RAY_AUTH_TOKEN",
        "wrong token": "rejected the token: set RAY_AUTH_TOKEN",
        "unknown job": "no job 'tiny-nope' on the Ray cluster",
    }[case]
    if case == "wrong address":
        env["RAY_ADDRESS"] = f"http://127.0.0.1:{free_ports(1)[0]}"
    elif case == "missing token":
        del env["RAY_AUTH_TOKEN"]
    elif case == "wrong token":
        env["RAY_AUTH_TOKEN"] = "0" * 32
    result = genint("status", "tiny-nope", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("genint: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert expected in result.stderr


# A Ray client connection that gets through starts a server process per client on the head, which
# on a loaded 2-core machine sometimes fails to come up: ray:// is asserted where genint decides.
@pytest.mark.parametrize("command, server, case", [
    *[(command, "gcs", case) for command in ("scale", "top") for case in ("missing token", "wrong token", "right token")],
    ("scale", "ray client", "missing token"), ("scale", "ray client", "wrong token"),
])
def test_scale_and_top_send_the_token_and_say_when_it_is_missing_or_rejected(head, command, server, case):
    env, _, addresses = head
    address = addresses[server]
    env = {key: value for key, value in env.items() if key != "RAY_ADDRESS"}
    if case == "missing token":
        del env["RAY_AUTH_TOKEN"]
    elif case == "wrong token":
        env["RAY_AUTH_TOKEN"] = "0" * 32
    arguments = ["--datagen", "2"] if command == "scale" else ["--once"]
    result = genint(command, "nojob", "--address", address, *arguments, env=env)
    expected = {
        "missing token": f"genint: error: Ray cluster at {address} requires a token and none was sent: set RAY_AUTH_TOKEN",
        "wrong token": f"genint: error: Ray cluster at {address} rejected the token: set RAY_AUTH_TOKEN",
        # Connected with the token: the cluster answered that no such job runs there.
        "right token": "genint: error: no running job 'nojob' on this Ray cluster",
    }[case]
    assert result.returncode == 1
    assert result.stderr.startswith(expected) and result.stderr.count("\n") == 1, result.stderr
