"""The job's controller: one named Ray actor per job that runs generation beside training.

It owns the datagen pools (generation, then transfer) and the training runs, feeds and serves the
job's Prometheus registry, and collects every actor's and rank's progress. It is a threaded actor:
``run`` holds one thread for the job's life while ``status``, ``scale_datagen``,
``scale_trainers``, ``stop`` and rank 0's ``training_should_stop`` are served beside it, to the
``genint run`` driver, to ``genint scale`` and ``top`` in other processes (which find it by name:
cluster/controller_client.py) and to the training workers.

The job's state (``JobState``) changes in one place, ``_step``: every event goes through it, the
policies of cluster/policies.py decide what a training run's end, a scale request, a generation
error or a stop request means, and each move is logged with its reason (in the controller's log
in the Ray session's log directory; on the console with ``genint --debug``). ``_step`` holds the
lock and calls nothing remote, so no request waits on Ray while holding it.

Changing the trainer count is cooperative: rank 0 asks ``training_should_stop`` after every
step, the workers checkpoint and return, and training restarts with the new count from that
checkpoint.
"""

import copy
import logging
import threading
import time
from dataclasses import dataclass

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from cluster.config import JobConfig
from cluster.controller_client import NAMESPACE, JobStatus, PoolStatus, TrainStart, TrainStatus, controller_name
from cluster.errors import ClusterError
from cluster.generation import PoolStage, run_datagen_stages, run_pool
from cluster.metrics import job_metrics, serve
from cluster.monitor import MetricsCallback, pool_recorder
from cluster.policies import (
    TRAINING_STATES,
    Decision,
    JobState,
    Move,
    after_generation_error,
    after_training_run,
    on_datagen_scale,
    on_stop,
    on_trainer_scale,
)
from cluster.training import train_job
from datagen.actors import ActorSettings
from datagen.pool import ActorPool, PoolEvent, PoolReport
from datagen.units import WorkUnit
from trainers.callbacks import StartReport, StepReport, TrainCallback, TrainResult

logger = logging.getLogger(__name__)

# Requests outlive a driver's short poll; several callers may ask at once.
_MAX_CONCURRENCY = 8


@dataclass
class JobOutcome:
    """What ``run`` returns to the driver."""

    generated: dict[str, PoolReport]  # per stream
    train: TrainResult
    last_step: StepReport | None  # rank 0's last report
    status: JobStatus


# -- the events ``_step`` takes -------------------------------------------------------------------


@dataclass(frozen=True)
class RunBegan:
    pass


@dataclass(frozen=True)
class TrainingStarted:
    workers: int  # the worker group reported ready (a fresh run, a rescale or Ray Train's own restart)


@dataclass(frozen=True)
class TrainingReturned:
    steps: int


@dataclass(frozen=True)
class TrainingFailed:
    error: BaseException


@dataclass(frozen=True)
class GenerationFailed:
    error: BaseException


@dataclass(frozen=True)
class StopRequested:
    pass


@dataclass(frozen=True)
class TrainerScale:
    workers: int


@dataclass(frozen=True)
class DatagenScale:
    actors: int


@dataclass(frozen=True)
class Drained:
    pass  # training has returned and the generation thread has ended


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


class StopSignal:
    """The picklable ``should_stop`` handed to the training workers: rank 0 asks the controller after every step."""

    def __init__(self, controller: "ray.actor.ActorHandle") -> None:
        self.controller = controller

    def __call__(self) -> bool:
        return ray.get(self.controller.training_should_stop.remote())


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


def _log_to_stderr() -> None:
    """This module's INFO lines (every move of ``_step``) on the process's stderr: in the actor, Ray
    keeps that in the session's log directory and streams it to the console only with ``--debug``."""
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


class JobController:
    """Runs one job's generation and training (see the module docstring); a Ray actor."""

    def __init__(self, config: JobConfig, plan: tuple[ActorSettings, list[WorkUnit]] | None,
                 growing: frozenset[str], use_gpu: bool) -> None:
        self.config, self.plan, self.growing, self.use_gpu = config, plan, growing, use_gpu
        _log_to_stderr()
        self.metrics = job_metrics(config.name)
        port = serve(self.metrics, config.metrics.host, config.metrics.port)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified by every _step
        self._state = JobState.STARTING  # changed only by _step
        self._status = JobStatus(config.name, self._state, f"http://{config.metrics.host}:{port}/metrics", {},
                                 TrainStatus(max_steps=config.train.max_steps))
        self._target_workers = config.train.workers  # what the next training run starts with
        self._run_workers = config.train.workers  # what the training run in progress started with
        self._ending: JobState | None = None  # the end state once drained (set on entering DRAINING)
        self._error: BaseException | None = None  # the first error of training or generation
        self._pool: ActorPool | None = None
        self._pool_stage = ""
        self._pending_datagen: int | None = None  # a resize asked for before the generator pool started
        self._generated: dict[str, PoolReport] = {}

    # -- the state machine -----------------------------------------------------------------

    def _step(self, event) -> Decision | None:
        """Move the job on ``event``: ask its policy where one decides, change the state, log why.

        Besides the state it changes only local things (the trainer count asked for, a pool's
        target size, a pool's stop flag), none of which blocks.

        Returns:
            the policy's decision, for the events that have one.
        """
        with self._changed:
            before, decision, note = self._state, None, ""
            after = before
            match event:
                case RunBegan():
                    after, note = (JobState.RUNNING if before is JobState.STARTING else before), "the run began"
                case TrainingStarted(workers):
                    note = f"training is up with {workers} workers"
                    if before is JobState.RESCALING and workers == self._target_workers:
                        after = JobState.RUNNING
                case TrainingReturned(steps):
                    decision = after_training_run(steps, self.config.train.max_steps, stopping=before is JobState.STOPPING)
                    if decision.move is not Move.RESTART:
                        after = self._drain(JobState.FINISHED if decision.move is Move.DONE else JobState.STOPPED)
                case TrainingFailed(error):
                    self._record(error)
                    after, note = self._drain(JobState.FAILED), f"training failed: {_first_line(error)}"
                case GenerationFailed(error):
                    decision = after_generation_error(before, _first_line(error))
                    self._record(error)
                    if before in TRAINING_STATES:
                        after = JobState.STOPPING
                case StopRequested():
                    decision = on_stop(before)
                    if decision.move is Move.STOP_JOB:
                        after = JobState.STOPPING
                case TrainerScale(workers):
                    decision = on_trainer_scale(self.config.name, before, workers, self._target_workers)
                    if decision.move is Move.RESCALE:
                        self._target_workers = workers
                        if before is not JobState.STARTING:  # else the first run simply starts with it
                            after = JobState.RUNNING if workers == self._run_workers else JobState.RESCALING
                case DatagenScale(actors):
                    running = self._pool_stage if self._pool is not None else None
                    generator_to_come = self.plan is not None and not self._status.pools
                    decision = on_datagen_scale(self.config.name, before, actors, running, generator_to_come)
                    if decision.move is Move.RESIZE:
                        self._pool.resize(actors)
                    elif decision.move is Move.RESIZE_AT_START:
                        self._pending_datagen = actors
                case Drained():
                    after, note = (JobState.FAILED if self._error is not None else self._ending), "generation has ended"
            self._state = self._status.phase = after
            if decision is not None:
                logger.info("job %s: [%s] %s (%s -> %s)", self.config.name, decision.move, decision.reason, before, after)
            else:
                logger.info("job %s: %s (%s -> %s)", self.config.name, note, before, after)
            self._changed.notify_all()
        return decision

    def _drain(self, ending: JobState) -> JobState:
        """Training has returned: the running pool finishes its in-flight units; ``ending`` follows."""
        self._ending = ending
        if self._pool is not None:
            self._pool.stop()
        return JobState.DRAINING

    def _record(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
            self._status.error = _first_line(error)

    # -- the job ---------------------------------------------------------------------------

    def run(self) -> JobOutcome:
        """Generate beside training until training reaches ``max_steps`` (or the job stops); then stop generation.

        Raises:
            the first error of training or generation (generation's error also stops training).
        """
        self._step(RunBegan())
        generation = threading.Thread(target=self._generate, name="genint-generation", daemon=True)
        if self.plan is not None:
            generation.start()
        try:
            result, last = self._train()
        except BaseException as error:
            self._step(TrainingFailed(error))
            raise
        finally:
            if generation.is_alive():
                generation.join()
            self._step(Drained())
        if self._state is JobState.FAILED:
            raise self._error
        return JobOutcome(dict(self._generated), result, last, self.status())

    def _train(self) -> tuple[TrainResult, StepReport | None]:
        """Ray Train runs until ``max_steps``; a rescale ends one run at a checkpoint and starts the next."""
        callbacks = [MetricsCallback(self.metrics, self.config.name), _StatusCallback(self)]
        should_stop = StopSignal(ray.get_runtime_context().current_actor)
        while True:
            with self._lock:
                # From now on a request for another count makes training_should_stop say True.
                self._run_workers = workers = self._target_workers
            config = self.config.model_copy(update={"train": self.config.train.model_copy(update={"workers": workers})})
            result, last = train_job(config, self._train_progress, self.growing, callbacks, use_gpu=self.use_gpu,
                                     should_stop=should_stop)
            with self._lock:
                self._status.train.workers = 0
            self.metrics.trainer_workers.labels(job=self.config.name).set(0)
            if self._step(TrainingReturned(result.steps)).move is not Move.RESTART:
                return result, last

    def _train_progress(self, step: int, max_steps: int) -> None:
        with self._lock:
            self._status.train.step = step

    def _train_started(self, report: StartReport) -> None:
        with self._lock:
            train = self._status.train
            train.starts.append(TrainStart(report.step, report.workers, time.time()))
            train.workers, train.step = report.workers, report.step
        self.metrics.trainer_workers.labels(job=self.config.name).set(report.workers)
        self._step(TrainingStarted(report.workers))

    def _generate(self) -> None:
        try:
            if self.config.datagen.start == "after_trainer_ready" and not self._wait_for_trainer():
                return
            self._generated = run_datagen_stages(self.config, self.plan, self._run_pool, stopping=self._starts_no_pool)
        except Exception as error:  # raised by run() once training has stopped
            self._step(GenerationFailed(error))

    def _wait_for_trainer(self) -> bool:
        """Wait until training's workers are up (True), or the job stops before they are (False)."""
        with self._changed:
            self._changed.wait_for(lambda: self._status.train.starts or self._state not in TRAINING_STATES)
            return bool(self._status.train.starts)

    def _starts_no_pool(self) -> bool:
        """No later stage (transfer) starts once the job stops or training has returned."""
        with self._lock:
            return self._state not in TRAINING_STATES

    def _run_pool(self, stage: PoolStage) -> PoolReport:
        recorder = pool_recorder(self.metrics, self.config.name, stage.stream, stage.stage)
        with self._lock:
            status = self._status.pools[stage.stage] = PoolStatus(stage.stage, stage.stream, running=True)

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

        pool = stage.make_pool(update, on_event)
        with self._lock:
            self._pool, self._pool_stage = pool, stage.stage
            if self._pending_datagen is not None:
                pool.resize(self._pending_datagen)
                self._pending_datagen = None
            if self._state is JobState.DRAINING:  # training returned while this pool started
                pool.stop()
        try:
            return run_pool(pool)
        finally:
            with self._lock:
                self._pool, status.running = None, False

    # -- requests --------------------------------------------------------------------------

    def status(self) -> JobStatus:
        with self._lock:
            return copy.deepcopy(self._status)

    def training_should_stop(self) -> bool:
        """Rank 0's question after every step: end this training run at a checkpoint? True while the
        job is stopping, and while a rescale asks for another worker count than the run has."""
        with self._lock:
            return self._state is JobState.STOPPING or self._target_workers != self._run_workers

    def scale_datagen(self, actors: int) -> str:
        """Resize the running datagen pool (or the generator pool about to start); training goes on.

        Raises:
            ClusterError: fewer than one actor, or no pool is running or still to come.
        """
        return self._answer(self._step(DatagenScale(actors)))

    def scale_trainers(self, workers: int) -> str:
        """Checkpoint, end the training run and restart it with ``workers`` workers from that checkpoint.

        Raises:
            ClusterError: fewer than one worker, or training has ended.
        """
        return self._answer(self._step(TrainerScale(workers)))

    def stop(self) -> None:
        """End the job early: training checkpoints and returns, then the pools finish their in-flight units.

        Generation goes on until training has returned, so a step waiting for generated data can
        still finish and checkpoint; no new stage (transfer) starts.
        """
        self._step(StopRequested())

    def _answer(self, decision: Decision) -> str:
        if decision.move is Move.REJECT:
            raise ClusterError(decision.reason)
        return f"{self.config.name}: {decision.reason}"


def start_controller(config: JobConfig, plan: tuple[ActorSettings, list[WorkUnit]] | None,
                     growing: frozenset[str], use_gpu: bool) -> "ray.actor.ActorHandle":
    """Create the job's named controller on this node (so a loopback metrics endpoint is local).

    Its runtime environment names this cluster in RAY_ADDRESS, and every process the job starts
    (its pools' actors, Ray Train's controller, placement-group cleaner and workers) inherits it:
    Ray's lookups without an address (the state API's, ``auto``) then find this cluster, never
    another Ray instance running on the same machine.

    Raises:
        ClusterError: a controller of the same job is already running on this Ray cluster.
    """
    name = controller_name(config.name)
    context = ray.get_runtime_context()
    options = {"name": name, "namespace": NAMESPACE, "num_cpus": 0, "max_concurrency": _MAX_CONCURRENCY,
               "scheduling_strategy": NodeAffinitySchedulingStrategy(context.get_node_id(), soft=False),
               "runtime_env": {"env_vars": {"RAY_ADDRESS": context.gcs_address}}}
    try:
        return ray.remote(JobController).options(**options).remote(config, plan, growing, use_gpu)
    except ValueError:
        raise ClusterError(f"job {config.name!r} is already running on this Ray cluster (actor {name}); "
                           "stop it first or give this job another name") from None
