"""Connecting to Ray: an embedded local instance by default, or an existing cluster by address."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

import ray

from cluster.errors import ClusterError


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Start an in-process local Ray or connect to ``address``; shut it down on exit if this call started it.

    The local dashboard listens on 127.0.0.1 only: Ray Train's placement-group cleaner needs its
    state API, and exposing it beyond loopback is a cluster deployment's explicit choice.
    """
    if ray.is_initialized():
        yield
        return
    try:
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            # A Ray job's driver finds its cluster in RAY_ADDRESS; otherwise "local" starts a new
            # instance even when `ray start` left a cluster's address in /tmp/ray.
            embedded = None if os.environ.get("RAY_ADDRESS") else "local"
            ray.init(address=embedded, num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise ClusterError(f"cannot start or reach Ray{f' at {address}' if address else ''}: {str(error).splitlines()[0]}") from None
    try:
        yield
    finally:
        ray.shutdown()


def cluster_has_gpus() -> bool:
    return ray.cluster_resources().get("GPU", 0) > 0
