"""Jobs on a Ray cluster through the Ray Jobs SDK: submit, status, logs, stop, list.

The cluster is named by its dashboard URL (``http://HOST:8265``), from ``--dashboard`` or
``RAY_ADDRESS`` (which Ray's own job CLI reads as the dashboard too). Token authentication: the
token (``local_ray.cluster_token``: ``RAY_AUTH_TOKEN``, else the file at ``RAY_AUTH_TOKEN_PATH``,
else ``~/.ray/auth_token``, Ray's own order) is sent as a bearer header, so a client needs no
``RAY_AUTH_MODE=token`` of its own.

The SDK's requests have no timeout, so ``connect`` first asks the dashboard for its version within
``CONNECT_TIMEOUT_S``: an address that answers nothing, or is not a Ray dashboard, or refuses the
token is one line before any SDK call.
"""

import asyncio
import os
import secrets
import shlex
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import requests
from ray.exceptions import AuthenticationError
from ray.job_submission import JobDetails, JobSubmissionClient

from cluster.config import JobConfig, load_config, resolved_yaml
from cluster.errors import ClusterError, ConfigError
from cluster.local_ray import CONNECT_TIMEOUT_S, cluster_token, refused_token_line


def resolve_address(address: str | None) -> str:
    """The dashboard URL from ``--dashboard`` or ``RAY_ADDRESS``, checked for its form.

    Raises:
        ConfigError: neither is given, or the address is not an ``http(s)://HOST[:PORT]`` URL.
    """
    where = "--dashboard"
    if not address and os.environ.get("RAY_ADDRESS"):
        address, where = os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    if not address:
        raise ConfigError("no cluster address: pass --dashboard http://HOST:8265 or set RAY_ADDRESS")
    try:
        parts = urlsplit(address)
        parts.port  # raises ValueError for a port that is no number or out of range
        well_formed = parts.scheme in ("http", "https") and parts.hostname and not parts.path.strip("/") and not parts.query
    except ValueError:  # that port, or a broken [IPv6] literal
        well_formed = False
    if not well_formed:
        raise ConfigError(f"{where} {address!r} is not the Ray dashboard's URL: give http://HOST:8265")
    return address.rstrip("/")


def auth_headers() -> dict[str, str]:
    """The bearer header for the cluster's token, or none when no token is configured."""
    token = cluster_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


def check_dashboard(address: str, headers: dict[str, str]) -> None:
    """Ask the dashboard at ``address`` for its Ray version within CONNECT_TIMEOUT_S.

    Raises:
        ClusterError: nothing answers, the token is missing or rejected, or it is not a Ray dashboard.
    """
    try:
        response = requests.get(f"{address}/api/version", headers=headers, timeout=CONNECT_TIMEOUT_S)
    except requests.RequestException as error:
        reason = "no answer" if isinstance(error, requests.Timeout) else type(error).__name__
        raise ClusterError(f"cannot reach a Ray dashboard at {address} within {CONNECT_TIMEOUT_S:g} s ({reason}): "
                           "check --dashboard / RAY_ADDRESS (http://HOST:8265) and that the cluster is up") from None
    if response.status_code in (401, 403):
        raise ClusterError(refused_token_line(address, "Authorization" in headers))
    try:
        version = response.json()["ray_version"] if response.ok else None
    except (ValueError, KeyError, TypeError):  # not JSON, or JSON of something else
        version = None
    if not isinstance(version, str):
        raise ClusterError(f"{address} is not a Ray dashboard: GET /api/version answered HTTP {response.status_code} "
                           f"{response.headers.get('Content-Type', '')} without a Ray version")


@contextmanager
def _cluster_errors(address: str, job_id: str | None = None) -> Iterator[None]:
    """Turn the SDK's connection, authentication and not-found errors into one-line ClusterErrors."""
    try:
        yield
    except ConnectionError:
        raise ClusterError(f"cannot reach a Ray dashboard at {address}: check --dashboard / RAY_ADDRESS "
                           "(http://HOST:8265) and that the cluster is up") from None
    except AuthenticationError as error:
        raise ClusterError(refused_token_line(address, "Forbidden" in str(error))) from None
    except RuntimeError as error:
        if job_id is not None and "status code 404" in str(error):
            raise ClusterError(f"no job {job_id!r} on the Ray cluster at {address} (see genint list)") from None
        raise ClusterError(f"Ray cluster at {address}: {str(error).splitlines()[0]}") from None


def connect(address: str | None) -> tuple[JobSubmissionClient, str]:
    """A Jobs client for the cluster (its dashboard URL from ``--dashboard`` or ``RAY_ADDRESS``) and that URL.

    Raises:
        ConfigError: no address, or not a dashboard URL.
        ClusterError: nothing answering there, not a Ray dashboard, or a missing/rejected token.
    """
    address, headers = resolve_address(address), auth_headers()
    check_dashboard(address, headers)
    with _cluster_errors(address):
        return JobSubmissionClient(address, headers=headers), address


def submission_plan(config_path: Path, overrides: list[str], working_dir: Path | None,
                    staging: Path) -> tuple[JobConfig, str, dict]:
    """Validate the config here and build the job's entrypoint and runtime environment.

    Without ``working_dir`` the resolved config is written to ``staging`` (shipped as the job's
    working directory) and the entrypoint is ``genint run <name>.yaml``. With ``working_dir``
    (development: ship a source checkout) that directory is shipped instead; the config must lie
    inside it and the overrides travel on the entrypoint, so the cluster resolves the same config.

    Returns:
        (the validated config, the entrypoint, the runtime environment).

    Raises:
        ConfigError: the config is invalid. ClusterError: the config is outside ``working_dir``.
    """
    config = load_config(config_path, overrides)
    if working_dir is None:
        (staging / f"{config.name}.yaml").write_text(resolved_yaml(config))
        return config, shlex.join(["genint", "run", f"{config.name}.yaml"]), {"working_dir": str(staging)}
    try:
        relative = config_path.resolve().relative_to(working_dir.resolve())
    except ValueError:
        raise ClusterError(f"{config_path}: with --working-dir {working_dir} the config must lie inside it") from None
    sets = [argument for assignment in overrides for argument in ("--set", assignment)]
    return config, shlex.join(["genint", "run", str(relative), *sets]), {"working_dir": str(working_dir)}


def submit(config_path: Path, overrides: list[str], address: str | None,
           working_dir: Path | None = None) -> str:
    """Submit ``genint run`` of a config to a Ray cluster.

    Returns:
        The job's submission id, ``<config name>-<random hex>``.

    Raises:
        ConfigError: the config is invalid (checked before contacting the cluster).
        ClusterError: the cluster is unreachable or refuses the submission.
    """
    with tempfile.TemporaryDirectory(prefix="genint-submit-") as staging:
        config, entrypoint, runtime_env = submission_plan(config_path, overrides, working_dir, Path(staging))
        client, address = connect(address)
        with _cluster_errors(address):
            return client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env,
                                     submission_id=f"{config.name}-{secrets.token_hex(4)}",
                                     metadata={"genint_config": config.name})


def job_info(job_id: str, address: str | None) -> JobDetails:
    """The job's details (status, message, times, entrypoint)."""
    client, address = connect(address)
    with _cluster_errors(address, job_id):
        return client.get_job_info(job_id)


def job_logs(job_id: str, address: str | None, follow: bool = False) -> Iterator[str]:
    """The job's driver output; with ``follow``, chunks as they arrive until the job ends."""
    client, address = connect(address)
    with _cluster_errors(address, job_id):
        if not follow:
            yield client.get_job_logs(job_id)
            return
        client.get_job_status(job_id)  # a 404 here reads better than a closed websocket
        stream = client.tail_job_logs(job_id).__aiter__()
        loop = asyncio.new_event_loop()  # tail_job_logs is async; drive it chunk by chunk
        try:
            while True:
                try:
                    yield loop.run_until_complete(stream.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            loop.close()


def stop(job_id: str, address: str | None) -> bool:
    """Ask the cluster to stop a job. Returns False when it had already ended."""
    client, address = connect(address)
    with _cluster_errors(address, job_id):
        return client.stop_job(job_id)


def list_jobs(address: str | None) -> list[JobDetails]:
    """Every job the cluster knows, oldest first."""
    client, address = connect(address)
    with _cluster_errors(address):
        return sorted(client.list_jobs(), key=lambda job: job.start_time or 0)

