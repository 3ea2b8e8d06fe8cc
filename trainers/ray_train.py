"""The entry point the cluster layer calls: N Ray Train workers, each a DeepSpeed engine.

Workers send their step reports with ``ray.train.report``; Ray Train's controller hands them to
a ``UserCallback`` that forwards them over a Ray queue to the driver, where the caller's
``TrainCallback`` objects run (so they may hold driver-side state such as a Prometheus registry).
"""

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ray
import ray.train
import torch
from ray.train import FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from ray.train.v2._internal import constants as ray_train_constants
from ray.train.v2.api.callback import UserCallback
from ray.util.queue import Queue

from shards.locations import S3Url
from trainers.callbacks import StartReport, TrainCallback, TrainResult, WorkerReport
from trainers.checkpoint_files import remove_checkpoints
from trainers.checkpoint_mirror import remove_remote_checkpoints
from trainers.config import TrainConfig
from trainers.deepspeed_config import deepspeed_config, step_schedule
from trainers.errors import TrainError
from trainers.loop import ShouldStop, SourceFactory, run_worker
from trainers.models import check_weights

logger = logging.getLogger(__name__)

CHECKPOINT_SUBDIR = "checkpoints"
_DONE = "done"


class _ForwardReports(UserCallback):
    """Runs in Ray Train's controller: puts every round of worker reports on the driver's queue."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
        self.queue.put(metrics)


def _report(report: WorkerReport) -> None:
    ray.train.report(report.to_dict())


def _worker(args: dict) -> None:
    """One Ray Train worker (the process group is already initialised by Ray Train)."""
    # DeepSpeed picks its accelerator on import (it is imported later, in build_engine);
    # the CPU one runs its collectives over Ray Train's gloo group.
    os.environ["DS_ACCELERATOR"] = "cuda" if args["use_gpu"] else "cpu"
    if not args["use_gpu"]:
        # DeepSpeed's import of torch.utils.cpp_extension warns on every CPU worker that no CUDA
        # runtime is found; a CPU worker builds no CUDA op, so the warning tells nothing.
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    device = ray.train.torch.get_device() if args["use_gpu"] else torch.device("cpu")
    run_worker(args["config"], args["make_source"], Path(args["checkpoint_dir"]), device, _report, args["should_stop"],
               args["checkpoint_url"])


class _Dispatcher:
    """Drains the report queue in a driver thread and calls the callbacks in step order."""

    def __init__(self, queue: Queue, callbacks: list[TrainCallback]) -> None:
        self.queue, self.callbacks = queue, callbacks
        self.last_step, self.final_losses, self.checkpoint = 0, {}, None
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run, name="train-reports", daemon=True)

    def _run(self) -> None:
        while (rounds := self.queue.get()) != _DONE:
            if self.error is None:
                try:
                    self._dispatch(rounds)
                except Exception as error:  # re-raised by train() once fit returns
                    self.error = error

    def _dispatch(self, payloads: list[dict]) -> None:
        rounds = [WorkerReport.from_dict(payload) for payload in payloads]  # one per rank, by rank
        first = rounds[0]
        if first.started is not None:
            self.last_step = first.started
            for callback in self.callbacks:
                callback.on_start(StartReport(first.started, len(rounds)))
        for reports in zip(*(worker.steps for worker in rounds)):
            for report in reports:
                self.final_losses[report.rank] = report.loss
                self.last_step = report.step
                for callback in self.callbacks:
                    callback.on_step(report)
        if first.checkpoint is not None:
            self.checkpoint = first.checkpoint.path
            for callback in self.callbacks:
                callback.on_checkpoint(first.checkpoint)


@contextmanager
def _ray_train_on_this_cluster() -> Iterator[None]:
    """Name this cluster in RAY_ADDRESS for the Ray Train controller that ``fit`` starts, and so for
    the processes it starts in turn (its placement-group cleaner, the workers).

    The cleaner asks the state API whether the controller lives without giving an address
    (ray/train/v2/_internal/state/util.py ``is_actor_alive`` -> ``ray.util.state.get_actor``), and
    the state API then takes RAY_ADDRESS or else looks for GCS processes on this machine
    (ray/dashboard/utils.py ``get_address_for_submission_client``): with another Ray running beside
    this one that is ``ConnectionError: Found multiple active Ray instances``, a traceback in the
    cleaner, which then stops watching. Ray Train starts its controller with those variables of its
    ``ENV_VARS_TO_PROPAGATE`` that are set in this process (``_initialize_and_run_controller`` in
    ray/train/v2/api/data_parallel_trainer.py), and the controller's children inherit them.
    """
    if ray.util.client.ray.is_connected():  # a Ray client: this process's environment does not reach the cluster
        yield
        return
    ray_train_constants.ENV_VARS_TO_PROPAGATE.add("RAY_ADDRESS")
    saved = os.environ.get("RAY_ADDRESS")
    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    try:
        yield
    finally:
        if saved is None:
            del os.environ["RAY_ADDRESS"]
        else:
            os.environ["RAY_ADDRESS"] = saved


def check_train_config(config: TrainConfig, num_workers: int) -> None:
    """Fail in the driver, before any worker starts, on what would fail in every worker."""
    if num_workers < 1:
        raise TrainError(f"num_workers must be >= 1 (got {num_workers})")
    step_schedule(config)
    deepspeed_config(config, use_cuda=False)
    check_weights(config.model, config.pretrained)


def _worker_error(error: ray.train.TrainingFailedError) -> Exception:
    """The first TrainError a worker raised (one line for the CLI), else the Ray error itself."""
    for failure in getattr(error, "worker_failures", {}).values():
        cause = failure.as_instanceof_cause() if isinstance(failure, ray.exceptions.RayTaskError) else failure
        if isinstance(cause, TrainError):
            return TrainError(str(cause).splitlines()[0])
    return error


def train(
    config: TrainConfig,
    make_source: SourceFactory,
    output_dir: Path,
    callbacks: list[TrainCallback] = (),
    num_workers: int | None = None,
    use_gpu: bool = False,
    resume: bool = True,
    worker_resources: dict[str, float] | None = None,
    should_stop: ShouldStop | None = None,
    checkpoint_url: S3Url | None = None,
) -> TrainResult:
    """Train with ``num_workers`` Ray Train workers (one DeepSpeed engine each) until ``config.max_steps``.

    Needs a running Ray (``ray.init``). Checkpoints go to ``output_dir/checkpoints`` (on shared
    storage when workers span nodes); a worker failure restarts the group from the latest one.

    Args:
        config: the training config.
        make_source: builds a stream's ``BatchSource`` on a worker (it is pickled to the workers).
        output_dir: the job's training directory.
        callbacks: receive every rank's step reports, checkpoints and the end, in the driver.
        num_workers: data-parallel workers; None: ``config.workers``.
        use_gpu: one GPU per worker (bf16, NCCL); else CPU (fp32, gloo).
        resume: continue from the newest checkpoint in ``output_dir``; False deletes the checkpoints genint wrote there first.
        worker_resources: Ray resources of each worker (e.g. ``{"CPU": 4, "trainer": 1}``); None: ``config.worker_resources``.
        should_stop: a picklable callable that rank 0 asks after every step (e.g. one reading a
            small Ray actor); True ends the run with a checkpoint before ``max_steps``, so a
            later ``train`` (maybe with another ``num_workers``) resumes there.
        checkpoint_url: an ``s3://`` prefix every checkpoint is also copied to, and a run resumes
            from (its newest step, never a local one it does not hold; a job whose output is a bucket).
    Returns:
        the last step (below ``config.max_steps`` when stopped), the newest checkpoint and each rank's last loss.
    Raises:
        TrainError: bad config, or a worker's TrainError (e.g. bad data) after the retries.
    """
    num_workers = config.workers if num_workers is None else num_workers
    worker_resources = config.worker_resources if worker_resources is None else worker_resources
    check_train_config(config, num_workers)
    output_dir = Path(output_dir).absolute()
    checkpoint_dir = output_dir / CHECKPOINT_SUBDIR
    if not resume:
        logger.info("resume=False: removing old checkpoints in %s", checkpoint_dir)
        remove_checkpoints(checkpoint_dir)
        if checkpoint_url is not None:
            remove_remote_checkpoints(checkpoint_url)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    # No CPU reserved: the queue only relays small dicts.
    queue = Queue(actor_options={"num_cpus": 0})
    dispatcher = _Dispatcher(queue, list(callbacks))
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"config": config, "make_source": make_source, "checkpoint_dir": str(checkpoint_dir), "use_gpu": use_gpu,
                           "should_stop": should_stop, "checkpoint_url": checkpoint_url},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu, resources_per_worker=worker_resources),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(
            name="train",
            storage_path=str(output_dir / "ray"),
            failure_config=FailureConfig(max_failures=config.max_failures),
            callbacks=[_ForwardReports(queue)],
        ),
    )
    dispatcher.thread.start()
    try:
        with _ray_train_on_this_cluster():
            trainer.fit()
    except ray.train.TrainingFailedError as error:
        raise _worker_error(error) from error
    finally:
        queue.put(_DONE)
        dispatcher.thread.join()
        ray.kill(queue.actor)
    if dispatcher.error is not None:
        raise dispatcher.error
    result = TrainResult(dispatcher.last_step, dispatcher.checkpoint, dispatcher.final_losses)
    for callback in callbacks:
        callback.on_end(result)
    return result
