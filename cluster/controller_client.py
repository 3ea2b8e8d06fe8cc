"""Asking a running job's controller: find it by name, read its status, scale it, get its metrics URL.

The controller (cluster/controller.py) is a named Ray actor, ``genint-controller:<job>`` in the
``genint`` namespace. The status it answers is defined here as plain dataclasses, so a client
(``genint scale``, ``genint top``, the ``genint run`` driver) unpickles it without importing the
controller and, with it, torch and Ray Train.
"""

from dataclasses import dataclass, field

import ray

from cluster.errors import ClusterError, ConfigError
from cluster.local_ray import ray_session
from cluster.policies import JobState

NAMESPACE = "genint"


def controller_name(job: str) -> str:
    """The Ray actor name of a job's controller (in namespace ``genint``)."""
    return f"genint-controller:{job}"


@dataclass
class PoolStatus:
    """One datagen pool: ``datagen`` (the generator actors) or ``transfer`` (as the metrics' ``pool`` label)."""

    stage: str
    stream: str
    done: int = 0  # samples of the plan committed, earlier runs included
    total: int = 0
    actors: int = 0
    images_by_actor: dict[str, int] = field(default_factory=dict)  # this run, by writer id
    restarts: int = 0
    running: bool = False


@dataclass
class TrainStart:
    """One start of the worker group: a fresh run, a restart after a failure, or a rescale."""

    step: int  # the checkpoint's step it resumed from (0: none)
    workers: int
    time: float  # on the controller's clock, when the workers reported ready


@dataclass
class TrainStatus:
    max_steps: int
    step: int = 0
    workers: int = 0  # workers of the run in progress (0 between runs)
    samples: dict[str, int] = field(default_factory=dict)  # per stream, all ranks
    samples_by_rank: dict[int, dict[str, int]] = field(default_factory=dict)
    losses: dict[str, float] = field(default_factory=dict)  # rank 0's latest step, per stream
    starts: list[TrainStart] = field(default_factory=list)
    checkpoint: str | None = None


@dataclass
class JobStatus:
    """What a controller's ``status()`` answers."""

    job: str
    phase: JobState
    metrics_url: str
    pools: dict[str, PoolStatus]  # by stage: datagen, transfer
    train: TrainStatus
    error: str | None = None  # the first line of the error the job failed with


def result(reference: "ray.ObjectRef"):
    """``ray.get`` that re-raises the controller's own exception (one line for the CLI), not Ray's wrapper.

    Raises:
        ClusterError: the controller died.
    """
    try:
        return ray.get(reference)
    except ray.exceptions.RayTaskError as error:
        if isinstance(error.cause, Exception):
            raise error.cause from None
        raise
    except ray.exceptions.RayActorError as error:
        raise ClusterError(f"the job's controller died: {str(error).splitlines()[0]}") from None


def find_controller(job: str) -> "ray.actor.ActorHandle":
    """The controller of the running job named ``job`` on the Ray cluster this process is connected to.

    Raises:
        ClusterError: no such job runs there.
    """
    try:
        return ray.get_actor(controller_name(job), namespace=NAMESPACE)
    except ValueError:
        raise ClusterError(f"no running job {job!r} on this Ray cluster (no actor {controller_name(job)} "
                           f"in namespace {NAMESPACE}; its genint run has ended or uses another cluster)") from None


def scale_job(job: str, address: str | None = None, datagen: int | None = None, trainers: int | None = None) -> list[str]:
    """Resize a running job's datagen pool and/or its trainer group; returns what the controller did.

    Args:
        job: the job's name (``name`` in its config).
        address: the Ray cluster (``auto``, ``HOST:6379``, ``ray://HOST:10001``); None: ``auto``.

    Raises:
        ConfigError: no count given, or ``address`` is not a Ray cluster address.
        ClusterError: no Ray cluster there, no such job, or a count it cannot take.
    """
    if datagen is None and trainers is None:
        raise ConfigError("scale: give --datagen N and/or --trainers N")
    with ray_session(address or "auto"):
        controller = find_controller(job)
        done = []
        if datagen is not None:
            done.append(result(controller.scale_datagen.remote(datagen)))
        if trainers is not None:
            done.append(result(controller.scale_trainers.remote(trainers)))
        return done


def job_status(job: str, address: str | None = None) -> JobStatus:
    """A running job's status, from its controller (``address`` as in ``scale_job``)."""
    with ray_session(address or "auto"):
        return result(find_controller(job).status.remote())


def job_metrics_url(job: str, address: str | None = None) -> str:
    """The metrics endpoint of a running job (what ``genint top JOB`` watches)."""
    return job_status(job, address).metrics_url
