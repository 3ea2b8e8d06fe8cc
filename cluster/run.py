"""``genint run``: the whole job on an embedded local Ray (or the cluster it is submitted to).

Static streams are prepared, the generator trained and its directions computed where missing;
then the job's controller actor runs generation (and transfer) beside training, which follows
the growing streams, while this driver shows its progress; the store is verified and the job
summarised. Metrics are served on 127.0.0.1 while it runs.
"""

from dataclasses import dataclass
from pathlib import Path

import ray

from cluster.config import JobConfig, check_output_dir_is_this_jobs, config_hash, save_resolved
from cluster.controller import JobOutcome, start_controller
from cluster.controller_client import JobStatus, result
from cluster.errors import ClusterError
from cluster.generation import (
    compute_job_directions,
    job_training_fingerprint,
    plan_job_generation,
    pool_label,
    train_generator,
)
from cluster.local_ray import cluster_has_gpus, ray_session, session_logs_dir
from cluster.progress import console, progress_bar, progress_board
from cluster.training import check_streams_committed
from datagen.actors import ActorSettings
from datagen.generators.saved import read_training_record
from datagen.generators.training import TRAINABLE_KINDS
from datagen.pool import PoolReport
from datagen.units import WorkUnit
from shards.inspect import StreamSummary, summarize_store
from shards.locations import S3Url
from shards.prepare import PrepareReport, prepare_imagefolder
from shards.verify import verify_store
from trainers.callbacks import TrainResult

POLL_INTERVAL_S = 0.5
# How long Ctrl-C waits for training's checkpoint and the pools' in-flight units before killing them
# (a step blocked on data that no longer comes is not waited for; a rerun resumes from the last checkpoint).
STOP_GRACE_S = 60.0


@dataclass
class JobResult:
    """What a run produced."""

    config_hash: str
    prepared: dict[str, PrepareReport]
    streams: list[StreamSummary]
    output_dir: "Path | S3Url"
    generated: dict[str, PoolReport]  # per stream written by datagen
    trained_samples: dict[str, int]  # per stream, all ranks
    final_losses: dict[str, float]  # rank 0's last step, per stream
    train: TrainResult
    metrics_url: str
    status: JobStatus | None = None  # the controller's last status: per actor, per rank, training starts


def prepare_streams(config: JobConfig, config_hash: str) -> dict[str, PrepareReport]:
    """Build every static stream the config lists (resuming any that a crash interrupted)."""
    reports = {}
    for stream, prepare in config.shards.prepare.items():
        with progress_bar(f"prepare {stream}") as update:
            reports[stream] = prepare_imagefolder(
                prepare.source,
                config.store_dir,
                stream,
                seed=prepare.seed,
                unit_size=prepare.unit_size,
                max_samples=config.shards.max_samples_per_shard,
                max_bytes=config.shards.max_bytes_per_shard,
                config_hash=config_hash,
                workers=prepare.workers,
                on_progress=update,
            )
    return reports


def prepare_generator(config: JobConfig) -> None:
    """Finish what the job's generator needs that is not there yet: a trained CVAE or CGN, and the
    directions for an intervention strategy.

    An existing generator directory is reused unless genint trained it with other settings or on
    other shards (its ``training.json`` says so): then it is trained again, and directions at their
    default path are computed again for it. An existing directions file is otherwise reused.
    """
    datagen = config.datagen
    retrained = datagen.generator.kind in TRAINABLE_KINDS and _generator_needs_training(config)
    if retrained:
        train_generator(config)
    directions = datagen.directions_path(config.local_output_dir)
    if datagen.strategy.kind == "intervention" and (not directions.exists() or (retrained and datagen.directions.path is None)):
        compute_job_directions(config)


def _generator_needs_training(config: JobConfig) -> bool:
    weights = Path(config.datagen.weights_path(config.local_output_dir))
    if not weights.exists():
        return True
    recorded = read_training_record(weights)
    if recorded is None or recorded == job_training_fingerprint(config):
        return False
    console.print(f"datagen.generator: {weights} was trained with other settings or on other shards; training it again")
    return True


def prepare_generation(config: JobConfig, config_hash: str) -> tuple[ActorSettings, list[WorkUnit]] | None:
    """``prepare_generator``, then plan the generation (None when the job generates nothing)."""
    if config.datagen.actors < 1:
        return None
    prepare_generator(config)
    return plan_job_generation(config, config_hash)


def _show(status: JobStatus, bars: dict, add_bar) -> None:
    """Advance the progress board from the controller's status (a bar appears at its first update)."""
    shown = [(pool_label(pool.stage, pool.stream), pool.done, pool.total) for pool in status.pools.values() if pool.total]
    if status.train.starts:
        shown.append(("train", status.train.step, status.train.max_steps))
    for label, done, total in shown:
        if label not in bars:
            bars[label] = add_bar(label)
        bars[label](done, total)


def _drive(controller, config: JobConfig, add_bar) -> JobOutcome:
    """Run the job on its controller and show its progress until it ends.

    Ctrl-C asks the controller to stop (training checkpoints, then pools finish their in-flight
    units) and waits up to STOP_GRACE_S for that; the controller is killed on the way out in every case,
    which ends its actors and workers with it.
    """
    running = controller.run.remote()
    bars: dict = {}
    try:
        status = result(controller.status.remote())
        address = ray.get_runtime_context().gcs_address
        console.print(f"metrics: {status.metrics_url}")
        console.print(f"ray: {address} (genint scale {config.name} --address {address} --datagen N or --trainers N)")
        console.print(f"ray logs: {session_logs_dir()} (on the console with genint --debug)")
        while True:
            ready, _ = ray.wait([running], timeout=POLL_INTERVAL_S)
            _show(result(controller.status.remote()), bars, add_bar)
            if ready:
                return result(running)
    except KeyboardInterrupt:
        controller.stop.remote()
        ray.wait([running], timeout=STOP_GRACE_S)
        raise
    finally:
        ray.kill(controller)


def run_job(config: JobConfig) -> JobResult:
    """Run the job on this machine: prepare, generate and train at the same time, verify, summarise.

    A controller actor (cluster/controller.py) runs generation beside training; training follows
    the streams generation writes (they grow while it runs). When training ends, generation stops
    after its in-flight units; a rerun resumes both where they stopped. Ctrl-C stops the same way
    (training checkpoints first) and raises KeyboardInterrupt.

    Raises:
        ClusterError: output_dir holds another job (nothing is written then), or the store fails verification.
    """
    check_output_dir_is_this_jobs(config)
    digest = config_hash(config)
    # A BigGAN needs nothing the job builds, so its weights, directions and plan are checked before
    # anything is written; a CVAE is trained on the prepared streams, so it comes after them.
    generator_first = config.datagen.generator.kind == "biggan"
    plan = prepare_generation(config, digest) if generator_first else None
    save_resolved(config)
    prepared = prepare_streams(config, digest)
    if not generator_first:
        plan = prepare_generation(config, digest)
    growing = frozenset()
    if plan is not None:
        growing = frozenset({config.datagen.stream} | ({config.datagen.transfer.stream} if config.datagen.transfer.actors else set()))
    check_streams_committed(config, growing)
    with ray_session(), progress_board() as add_bar:
        controller = start_controller(config, plan, growing, use_gpu=cluster_has_gpus())
        outcome = _drive(controller, config, add_bar)
    findings, _ = verify_store(config.store_dir)
    problems = [finding for finding in findings if finding.is_problem]
    if problems:
        raise ClusterError(f"shard store {config.store_dir} failed verification: {problems[0]} (+{len(problems) - 1} more)")
    last, status = outcome.last_step, outcome.status
    return JobResult(
        digest, prepared, summarize_store(config.store_dir), config.output_dir, outcome.generated, status.train.samples,
        last.stream_losses if last else {}, outcome.train, status.metrics_url, status,
    )
