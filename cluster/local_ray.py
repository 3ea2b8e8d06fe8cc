"""Connecting to Ray: an embedded local instance on loopback by default, or an existing cluster by address.

Both ways are bounded: a cluster address is checked with one gRPC call (reachable, a Ray GCS, the
token accepted) within ``CONNECT_TIMEOUT_S`` before ``ray.init``, whose own retry loop would otherwise
wait for minutes; every failure is a one-line ClusterError (ConfigError for an address that is not one).
"""

import ipaddress
import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import ray
from ray._private import ray_constants, services

from cluster.errors import ClusterError, ConfigError

CONNECT_TIMEOUT_S = 10.0
TOKEN_HELP = "set RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token to the cluster's token"
CLUSTER_ADDRESS_FORMS = "HOST:6379 (the head's GCS), ray://HOST:10001 (Ray client) or auto"
# Ray's own switch for single-node (macOS/Windows) mode: the node's address is 127.0.0.1 instead of
# the machine's network address. Read once when ray is imported (ray_constants.ENABLE_RAY_CLUSTER).
_SINGLE_NODE_ENV = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR
# Set by show_ray_output (``genint --debug``): one switch for the whole process, as --debug is.
_show_ray_output = False


def cluster_token() -> str | None:
    """The cluster's token: ``RAY_AUTH_TOKEN``, else the file at ``RAY_AUTH_TOKEN_PATH``, else
    ``~/.ray/auth_token`` (Ray's own order); None when none is configured."""
    token = os.environ.get("RAY_AUTH_TOKEN")
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if not token and path.is_file():
        token = path.read_text().strip()
    return token or None


def refused_token_line(where: str, token_sent: bool) -> str:
    """The one line for a cluster that wants a token we did not send, or rejected the one we sent."""
    refused = "rejected the token" if token_sent else "requires a token and none was sent"
    return f"Ray cluster at {where} {refused}: {TOKEN_HELP}"


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Start an in-process local Ray on 127.0.0.1 or connect to ``address``; shut it down on exit if
    this call started it.

    The embedded instance binds every server it starts (GCS, raylet, workers, agents, dashboard) to
    127.0.0.1; a cluster's binding is its own configuration. The local dashboard exists because Ray
    Train's placement-group cleaner needs its state API. Ray's own output stays off the console
    unless ``show_ray_output`` was called (``genint --debug``).

    Raises:
        ConfigError: ``address`` is not a Ray cluster address.
        ClusterError: Ray did not start, or the cluster cannot be reached or refused the token.
    """
    if ray.is_initialized():
        yield
        return
    with ExitStack() as settings:
        if address:
            _connect(address, settings)
        elif os.environ.get("RAY_ADDRESS"):
            # A Ray job's driver: Ray put its cluster's address in RAY_ADDRESS.
            _init(None, "the Ray cluster in RAY_ADDRESS")
        else:
            settings.enter_context(_loopback_node())
            # "local": a new instance even when `ray start` left a cluster's address in /tmp/ray.
            _init("local", "a local Ray", num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1")
        try:
            yield
        finally:
            ray.shutdown()


def show_ray_output() -> None:
    """Show Ray's own output on this process's console from now on (``genint --debug``): its INFO
    and WARNING lines and every actor's and worker's stdout and stderr, as ``(Name pid=...) line``.

    Otherwise a session shows only Ray's errors (and the raylet's reports of dead workers), and
    the rest (Ray Train's report echo, DeepSpeed's and torch's start-up lines, the actors' logs,
    genint's controller decisions) stays in the session's log directory (``session_logs_dir``).
    """
    global _show_ray_output
    _show_ray_output = True


def session_logs_dir() -> Path:
    """The log directory of the Ray session this process is connected to (this node's):
    ``worker-*.out``/``.err`` hold each actor's and worker's output."""
    return Path(ray._private.worker._global_node.get_logs_dir_path())


def cluster_has_gpus() -> bool:
    return ray.cluster_resources().get("GPU", 0) > 0


def _init(address: str | None, what: str, **options) -> None:
    """``ray.init`` with Ray's failures as one ClusterError line naming ``what``, and its output
    on the console only after ``show_ray_output``."""
    try:
        ray.init(address=address, log_to_driver=_show_ray_output,
                 logging_level=logging.INFO if _show_ray_output else logging.ERROR, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        # The reason is the first line, or the last one of a server's traceback after a "...:" line.
        lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
        reason = f"{lines[0]} {lines[-1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]
        raise ClusterError(f"cannot start or reach {what}: {reason}") from None


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables for the session (Ray's processes inherit them); restore on exit."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _loopback_node() -> Iterator[None]:
    """Make 127.0.0.1 this node's address while Ray starts (or joins) a node here.

    Ray binds the GCS, the raylet, the workers' gRPC servers and the agents to the node's address,
    or to all interfaces when that address is not loopback. On Linux it turns an explicit
    ``_node_ip_address="127.0.0.1"`` into the machine's network address
    (``services.resolve_ip_for_localhost``) unless multi-node clusters are off, as Ray has them off
    on macOS and Windows. So switch them off: the environment variable for the processes Ray starts,
    the constant for this process (it read the variable at import).
    """
    saved_flag = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with _environment(**{_SINGLE_NODE_ENV: "0"}):
            yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag


@contextmanager
def _token_mode(token: str | None) -> Iterator[None]:
    """Ray's client sends a token only in token mode (``RAY_AUTH_MODE=token``), which an explicit
    address does not turn on; turn it on when a token is configured and the mode is not set."""
    if token is None or os.environ.get("RAY_AUTH_MODE") is not None:
        yield
        return
    with _environment(RAY_AUTH_MODE="token"):
        ray._raylet.Config.initialize("")  # RayConfig has read the environment already: read it again
        try:
            yield
        finally:
            ray._raylet.Config.initialize("")


def cluster_address(address: str) -> tuple[str, str, int]:
    """Split a Ray cluster address; ``auto`` finds it as Ray does (RAY_ADDRESS, ``ray start``'s
    address file, a GCS running on this machine).

    Returns:
        (``"ray"`` for a Ray client server or ``""`` for a GCS, host, port).

    Raises:
        ConfigError: not one of ``CLUSTER_ADDRESS_FORMS``.
        ClusterError: ``auto`` found no cluster.
    """
    where = f"--address {address!r}"
    if address == "auto":
        if os.environ.get("RAY_ADDRESS"):
            where = f"RAY_ADDRESS={os.environ['RAY_ADDRESS']!r}"
        try:
            address = services.get_ray_address_from_environment("auto", None)
        except ConnectionError:
            raise ClusterError("no Ray cluster found on this machine (--address auto): is the job's genint run "
                               f"running here? Else pass --address {CLUSTER_ADDRESS_FORMS}") from None
    scheme, _, rest = address.rpartition("://")
    try:
        parts = urlsplit(f"//{rest}")
        host, port, extra = parts.hostname, parts.port, parts.path or parts.query or parts.username
    except ValueError:  # a port that is no number or out of range, a broken [IPv6] literal
        host = port = extra = None
    if scheme not in ("", "ray") or not host or port is None or extra:
        hint = " (that is the dashboard's URL, which submit/status/logs/stop/list take as --dashboard)" if scheme in ("http", "https") else ""
        raise ConfigError(f"{where} is not a Ray cluster address{hint}: give {CLUSTER_ADDRESS_FORMS}")
    return scheme, host, port


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name
        return host == "localhost"


def _connect(address: str, settings: ExitStack) -> None:
    """Check the cluster at ``address`` answers and takes our token, then join it (see the module docstring)."""
    scheme, host, port = cluster_address(address)
    target = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    token = cluster_token()
    _check_ray_server(target, token, client=scheme == "ray")
    settings.enter_context(_token_mode(token))
    if scheme == "ray":
        _init(f"ray://{target}", f"the Ray client server at ray://{target}")
        return
    if not services.find_node_ids():  # else ray.init looks for a local raylet for 60 s
        raise ClusterError(f"{target} is a Ray cluster's GCS, and a GCS address works only on one of its "
                           f"nodes; no Ray node runs on this machine: use ray://{host}:10001 (Ray client)")
    if _is_loopback(host):
        settings.enter_context(_loopback_node())  # else Ray would dial the machine's network address
    _init(target, f"the Ray cluster at {target}")


def _check_ray_server(target: str, token: str | None, client: bool) -> None:
    """One cheap call within CONNECT_TIMEOUT_S: GetClusterId to a GCS, or a ping (ClusterInfo) to a
    Ray client server, with the token as Ray sends it.

    Raises:
        ClusterError: nothing answers, it is not that Ray server, or it refuses the token.
    """
    import grpc
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc, ray_client_pb2, ray_client_pb2_grpc

    metadata = [("authorization", f"Bearer {token}")] if token else None
    where, kind = (f"ray://{target}", "Ray client server") if client else (target, "Ray cluster's GCS")
    with grpc.insecure_channel(target) as channel:
        if client:
            call = ray_client_pb2_grpc.RayletDriverStub(channel).ClusterInfo
            request = ray_client_pb2.ClusterInfoRequest(type=ray_client_pb2.ClusterInfoType.PING)
        else:
            call = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId
            request = gcs_service_pb2.GetClusterIdRequest()
        try:
            call(request, timeout=CONNECT_TIMEOUT_S, metadata=metadata)
        except grpc.RpcError as error:
            code = error.code()
            if code == grpc.StatusCode.UNAUTHENTICATED:
                raise ClusterError(refused_token_line(where, token is not None)) from None
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise ClusterError(f"cannot reach Ray at {where} within {CONNECT_TIMEOUT_S:g} s: {_grpc_reason(error)}") from None
            raise ClusterError(f"{where} is not a {kind} ({code.name}: {_grpc_reason(error)}); "
                               f"give {CLUSTER_ADDRESS_FORMS}") from None


def _grpc_reason(error) -> str:
    # gRPC's details run long ("failed to connect to all addresses; last error: ..."): keep the last part.
    return (error.details() or error.code().name).rsplit("last error: ", 1)[-1].splitlines()[0][:200]
