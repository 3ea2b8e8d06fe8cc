"""The embedded Ray (what `genint run` starts) listens on loopback only, and `genint top` / `scale`
in another process still reach its job by the address `genint run` prints."""

import ipaddress
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
import ray

from cluster.config import JobConfig
from cluster.controller import start_controller
from cluster.controller_client import result
from cluster.local_ray import ray_session

pytestmark = pytest.mark.slow
GENINT = Path(sys.executable).parent / "genint"
JOB = "loopback"


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    # Ray's gRPC servers bind IPv6 sockets to ::ffff:127.0.0.1, which accept loopback IPv4 only.
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def _listening_sockets() -> list[tuple[str, str, int]]:
    """(process name, ip, port) of every listening TCP socket of this process and its descendants:
    every process the embedded Ray started (GCS, raylet, dashboard, agents, workers, actors)."""
    found = []
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        try:
            name = process.name()
            connections = process.net_connections(kind="tcp")
        except psutil.NoSuchProcess:  # a short-lived helper ended while we looked
            continue
        found += [(name, c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN]
    return found


@pytest.fixture(scope="module")
def embedded_job(tmp_path_factory):
    """An embedded Ray as `genint run` starts it, with a job's controller (which serves the metrics)
    and no generation or training; yields (GCS address, metrics URL, the sockets that listened before it).

    Earlier tests in this process may have left sockets of their own (torch's rendezvous store of
    an in-process engine listens on every interface): only what the session adds is its."""
    root = tmp_path_factory.mktemp("loopback")
    before = set(_listening_sockets())
    config = JobConfig.model_validate({"name": JOB, "output_dir": str(root / "out"),
                                       "train": {"model": "small_cnn", "streams": {"original": {"batch_size": 8}}}})
    with ray_session(num_cpus=1):
        controller = start_controller(config, None, frozenset(), use_gpu=False)
        status = result(controller.status.remote())
        yield ray.get_runtime_context().gcs_address, status.metrics_url, before


def test_every_socket_of_the_embedded_ray_and_the_job_is_on_loopback(embedded_job):
    gcs_address, metrics_url, before = embedded_job
    sockets = [entry for entry in _listening_sockets() if entry not in before]
    ports = {port for _, _, port in sockets}
    names = {name for name, _, _ in sockets}
    # The check covers the servers the issue found on every interface, and the job's metrics endpoint.
    assert int(gcs_address.rsplit(":", 1)[1]) in ports and urlsplit(metrics_url).port in ports, sockets
    assert {"gcs_server", "raylet"} <= names, names
    assert gcs_address.startswith("127.0.0.1:") and urlsplit(metrics_url).hostname == "127.0.0.1"
    exposed = [entry for entry in sockets if not _is_loopback(entry[1])]
    assert not exposed, f"listening beyond loopback: {exposed}"


def _genint(*args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    return subprocess.run([str(GENINT), *args], env=env, capture_output=True, text=True, timeout=300)


def test_top_and_scale_in_another_process_reach_the_job_at_its_loopback_address(embedded_job):
    # Ray would turn 127.0.0.1 into the machine's network address, where nothing listens now.
    gcs_address, _, _ = embedded_job
    top = _genint("top", JOB, "--address", gcs_address, "--once", "--interval", "0.1")
    assert top.returncode == 0, top.stderr  # the controller gave the URL and it answered genint's metrics
    assert "train step" in top.stdout and "actor pools" in top.stdout
    scale = _genint("scale", JOB, "--address", gcs_address, "--datagen", "2")
    # The controller answered (this job has no generation): one line, without Ray's INFO lines.
    assert scale.returncode == 1
    assert scale.stderr.splitlines() == [f"genint: error: job '{JOB}' has no datagen pool running "
                                         "(generation finished or is off)"], scale.stderr
