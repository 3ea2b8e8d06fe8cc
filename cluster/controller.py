"""The job's controller: one named Ray actor per job that runs generation beside training.

It owns the datagen pools (generation, then transfer) and the training run, feeds and serves the
job's Prometheus registry, and collects every actor's and rank's progress. It is a threaded actor:
``run`` holds one thread for the job's life while ``status``, ``scale_datagen``,
``scale_trainers`` and ``stop`` are served beside it, from the ``genint run`` driver or from
``genint scale`` in another process (which finds it by name, ``genint-controller:<job>`` in the
``genint`` namespace).

Changing the trainer count is cooperative: rank 0 asks a small flag actor after every step, the
workers checkpoint and return, and training restarts with the new count from that checkpoint.
"""

import copy
import logging
import threading
import time
from dataclasses import dataclass, field

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from cluster.config import JobConfig
from cluster.errors import ClusterError, ConfigError
from cluster.generation import generation_pool, run_pool, transfer_pool
from cluster.local_ray import ray_session
from cluster.metrics import job_metrics, serve
from cluster.monitor import MetricsCallback, pool_recorder
from cluster.training import train_job
from datagen.actors import ActorSettings
from datagen.pool import ActorPool, PoolEvent, PoolReport
from datagen.units import WorkUnit
from trainers.callbacks import StartReport, StepReport, TrainCallback, TrainResult

logger = logging.getLogger(__name__)

NAMESPACE = "genint"
# Requests outlive a driver's short poll; several callers may ask at once.
_MAX_CONCURRENCY = 8


def controller_name(job: str) -> str:
    """The Ray actor name of a job's controller (in namespace ``genint``)."""
    return f"genint-controller:{job}"


def after_training_run(steps: int, max_steps: int, stopping: bool) -> str:
    """What the controller does when a training run returns: ``done`` (it reached ``max_steps``),
    ``stop`` (the job is stopping) or ``restart`` (it was stopped for a rescale: run again from its checkpoint)."""
    if steps >= max_steps:
        return "done"
    return "stop" if stopping else "restart"


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
    """What ``status()`` answers; ``phase`` is starting, running, stopping, finished, stopped or failed."""

    job: str
    phase: str
    metrics_url: str
    pools: dict[str, PoolStatus]  # by stage: datagen, transfer
    train: TrainStatus
    error: str | None = None


@dataclass
class JobOutcome:
    """What ``run`` returns to the driver."""

    generated: dict[str, PoolReport]  # per stream
    train: TrainResult
    last_step: StepReport | None  # rank 0's last report
    status: JobStatus


class _Flag:
    """A boolean that training workers read (rank 0, every step) and the controller sets."""

    def __init__(self) -> None:
        self.value = False

    def set(self, value: bool) -> None:
        self.value = value

    def get(self) -> bool:
        return self.value


class StopSignal:
    """The picklable ``should_stop`` callable handed to the training workers."""

    def __init__(self, flag: "ray.actor.ActorHandle") -> None:
        self.flag = flag

    def __call__(self) -> bool:
        return ray.get(self.flag.get.remote())


class _StatusCallback(TrainCallback):
    """Keeps the training part of the status from every rank's reports."""

    def __init__(self, controller: "JobController") -> None:
        self.controller = controller

    def on_start(self, report: StartReport) -> None:
        self.controller._train_started(report)

    def on_step(self, report: StepReport) -> None:
        with self.controller._lock:
            train = self.controller._status.train
            by_rank = train.samples_by_rank.setdefault(report.rank, {})
            for stream, count in report.samples.items():
                train.samples[stream] = train.samples.get(stream, 0) + count
                by_rank[stream] = by_rank.get(stream, 0) + count
            if report.rank == 0:
                train.losses = dict(report.stream_losses)

    def on_checkpoint(self, report) -> None:
        with self.controller._lock:
            self.controller._status.train.checkpoint = str(report.path)


class JobController:
    """Runs one job's generation and training (see the module docstring); a Ray actor."""

    def __init__(self, config: JobConfig, config_hash: str, plan: tuple[ActorSettings, list[WorkUnit]] | None,
                 growing: frozenset[str], use_gpu: bool) -> None:
        self.config, self.config_hash, self.plan, self.growing, self.use_gpu = config, config_hash, plan, growing, use_gpu
        self.metrics = job_metrics(config.name)
        port = serve(self.metrics, config.metrics.host, config.metrics.port)
        self._lock = threading.Lock()
        self._status = JobStatus(config.name, "starting", f"http://{config.metrics.host}:{port}/metrics", {},
                                 TrainStatus(max_steps=config.train.max_steps))
        self._stopping = threading.Event()  # training is to end and no new pool to start
        self._stop_requested = False
        self._trainer_ready = threading.Event()
        self._train_flag = ray.remote(_Flag).options(num_cpus=0).remote()
        self._workers = config.train.workers
        self._pool: ActorPool | None = None
        self._pool_stage = ""
        self._generation_ended = False  # set once training has returned: no pool may run on
        self._pending_datagen: int | None = None
        self._generated: dict[str, PoolReport] = {}
        self._generation_error: BaseException | None = None

    # -- the job ---------------------------------------------------------------------------

    def run(self) -> JobOutcome:
        """Generate beside training until training reaches ``max_steps`` (or ``stop``); then stop generation.

        Raises:
            the first error of training or generation (generation's error also stops training).
        """
        self._set_phase("running")
        generation = threading.Thread(target=self._generate, name="genint-generation", daemon=True)
        if self.plan is not None:
            generation.start()
        try:
            result, last = self._train()
        except BaseException as error:
            self._set_phase("failed", error)
            raise
        finally:
            self._stop_generation()
            if generation.is_alive():
                generation.join()
        if self._generation_error is not None:
            self._set_phase("failed", self._generation_error)
            raise self._generation_error
        self._set_phase("stopped" if self._stop_requested else "finished")
        return JobOutcome(dict(self._generated), result, last, self.status())

    def _train(self) -> tuple[TrainResult, StepReport | None]:
        """Ray Train runs until ``max_steps``; a rescale ends one run at a checkpoint and starts the next."""
        callbacks = [MetricsCallback(self.metrics, self.config.name), _StatusCallback(self)]
        while True:
            with self._lock:
                workers = self._workers
                # Cleared under the lock that stop() and scale_trainers() set it under, so a
                # request made while this run starts is not lost (a stopping job keeps it set).
                ray.get(self._train_flag.set.remote(self._stopping.is_set()))
            config = self.config.model_copy(update={"train": self.config.train.model_copy(update={"workers": workers})})
            result, last = train_job(config, self._train_progress, self.growing, callbacks, use_gpu=self.use_gpu,
                                     should_stop=StopSignal(self._train_flag))
            with self._lock:
                self._status.train.workers = 0
            self.metrics.trainer_workers.labels(job=self.config.name).set(0)
            move = after_training_run(result.steps, self.config.train.max_steps, self._stopping.is_set())
            if move != "restart":
                return result, last
            logger.info("training stopped at step %d for a rescale: restarting from its checkpoint", result.steps)

    def _train_progress(self, step: int, max_steps: int) -> None:
        with self._lock:
            self._status.train.step = step

    def _train_started(self, report: StartReport) -> None:
        with self._lock:
            self._status.train.starts.append(TrainStart(report.step, report.workers, time.time()))
            self._status.train.workers = report.workers
            self._status.train.step = report.step
        self.metrics.trainer_workers.labels(job=self.config.name).set(report.workers)
        self._trainer_ready.set()

    def _generate(self) -> None:
        config = self.config
        settings, units = self.plan
        try:
            if config.datagen.start == "after_trainer_ready":
                while not self._trainer_ready.wait(0.5):
                    if self._stopping.is_set():
                        return
            stream = config.datagen.stream
            self._run_pool("datagen", stream, lambda update, also: generation_pool(config, settings, units, update, also))
            stage = config.datagen.transfer
            if stage.actors > 0 and not self._stopping.is_set():
                self._run_pool("transfer", stage.stream,
                               lambda update, also: transfer_pool(config, units, self.config_hash, update, also))
        except Exception as error:  # raised by run() once training has stopped
            self._generation_error = error
            self.stop()

    def _run_pool(self, stage: str, stream: str, make_pool) -> None:
        recorder = pool_recorder(self.metrics, self.config.name, stream, stage)
        with self._lock:
            status = self._status.pools[stage] = PoolStatus(stage, stream, running=True)

        def update(done: int, total: int) -> None:
            with self._lock:
                status.done, status.total = done, total

        def on_event(event: PoolEvent) -> None:
            recorder(event)
            with self._lock:
                if event.kind in ("unit", "shards"):
                    status.images_by_actor[event.writer_id] = status.images_by_actor.get(event.writer_id, 0) + event.images
                elif event.kind == "restart":
                    status.restarts += 1
                elif event.kind == "resize":
                    status.actors = event.actors

        pool = make_pool(update, on_event)
        with self._lock:
            self._pool, self._pool_stage = pool, stage
            if self._pending_datagen is not None:
                pool.resize(self._pending_datagen)
                self._pending_datagen = None
            if self._generation_ended:
                pool.stop()
        try:
            self._generated[stream] = run_pool(pool)
        finally:
            with self._lock:
                self._pool, status.running = None, False

    def _stop_generation(self) -> None:
        with self._lock:
            self._stopping.set()
            self._generation_ended = True
            if self._pool is not None:
                self._pool.stop()

    def _set_phase(self, phase: str, error: BaseException | None = None) -> None:
        with self._lock:
            self._status.phase = phase
            if error is not None:
                self._status.error = str(error).splitlines()[0] if str(error) else type(error).__name__

    # -- requests --------------------------------------------------------------------------

    def status(self) -> JobStatus:
        with self._lock:
            return copy.deepcopy(self._status)

    def scale_datagen(self, actors: int) -> str:
        """Resize the running datagen pool (or the generator pool about to start); training goes on.

        Raises:
            ClusterError: fewer than one actor, or no pool is running or still to come.
        """
        if actors < 1:
            raise ClusterError(f"--datagen must be >= 1 (got {actors})")
        with self._lock:
            if self._pool is not None:
                self._pool.resize(actors)
                return f"{self.config.name}: {self._pool_stage} pool resized to {actors} actors"
            if self.plan is not None and not self._status.pools and not self._stopping.is_set():
                self._pending_datagen = actors
                return f"{self.config.name}: generation will start with {actors} actors"
        raise ClusterError(f"job {self.config.name!r} has no datagen pool running (generation finished or is off)")

    def scale_trainers(self, workers: int) -> str:
        """Checkpoint, end the training run and restart it with ``workers`` workers from that checkpoint.

        Raises:
            ClusterError: fewer than one worker, or training has ended.
        """
        if workers < 1:
            raise ClusterError(f"--trainers must be >= 1 (got {workers})")
        with self._lock:
            if self._stopping.is_set() or self._status.phase not in ("starting", "running"):
                raise ClusterError(f"job {self.config.name!r} is {self._status.phase}: its training cannot be rescaled")
            if workers == self._workers:
                return f"{self.config.name}: training already has {workers} workers"
            self._workers = workers
            ray.get(self._train_flag.set.remote(True))
        return f"{self.config.name}: training checkpoints and restarts with {workers} workers"

    def stop(self) -> None:
        """End the job early: training checkpoints and returns, then the pools finish their in-flight units.

        Generation goes on until training has returned, so a step waiting for generated data can
        still finish and checkpoint; no new stage (transfer) starts.
        """
        with self._lock:
            self._stop_requested = True
            self._stopping.set()
            self._status.phase = "stopping"
            ray.get(self._train_flag.set.remote(True))


# -- the client side: the driver and ``genint scale`` -------------------------------------------


def start_controller(config: JobConfig, config_hash: str, plan: tuple[ActorSettings, list[WorkUnit]] | None,
                     growing: frozenset[str], use_gpu: bool) -> "ray.actor.ActorHandle":
    """Create the job's named controller on this node (so a loopback metrics endpoint is local).

    Raises:
        ClusterError: a controller of the same job is already running on this Ray cluster.
    """
    name = controller_name(config.name)
    node = ray.get_runtime_context().get_node_id()
    options = {"name": name, "namespace": NAMESPACE, "num_cpus": 0, "max_concurrency": _MAX_CONCURRENCY,
               "scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False)}
    try:
        return ray.remote(JobController).options(**options).remote(config, config_hash, plan, growing, use_gpu)
    except ValueError:
        raise ClusterError(f"job {config.name!r} is already running on this Ray cluster (actor {name}); "
                           "stop it first or give this job another name") from None


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


def _find(job: str) -> "ray.actor.ActorHandle":
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
    with ray_session(address or "auto", quiet=True):
        controller = _find(job)
        done = []
        if datagen is not None:
            done.append(result(controller.scale_datagen.remote(datagen)))
        if trainers is not None:
            done.append(result(controller.scale_trainers.remote(trainers)))
        return done


def job_status(job: str, address: str | None = None) -> JobStatus:
    """A running job's status, from its controller (``address`` as in ``scale_job``)."""
    with ray_session(address or "auto", quiet=True):
        return result(_find(job).status.remote())


def job_metrics_url(job: str, address: str | None = None) -> str:
    """The metrics endpoint of a running job (what ``genint top JOB`` watches)."""
    return job_status(job, address).metrics_url
