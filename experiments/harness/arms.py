"""An experiment's run directory and its arms x seeds, each one genint training job.

A finished arm is reused while its job is unchanged: its result is saved beside the job's resolved
config with the job's config hash, and a rerun with the same hash returns it without training. A
changed job deletes the arm's old run directory first, so it never resumes another job's checkpoints.
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from pydantic import BaseModel

from cluster.config import JobConfig, config_hash, resolved_yaml, save_resolved
from cluster.local_ray import cluster_has_gpus
from cluster.progress import progress_bar
from cluster.run_dirs import claim_run_dir, remove_run_dir
from cluster.training import train_job
from shards.files import write_durably
from trainers.callbacks import StepReport, TrainResult

EXPERIMENT_CONFIG_FILE = "experiment.yaml"
ARMS_DIR = "arms"
RESULT_FILE = "result.json"
# An arm's run directory: its job's config, training (checkpoints, Ray Train's storage) and the
# result (with its temporary name while it is written).
ARM_DIR_LAYOUT = ("config.yaml", "config.sha256", "train", f"{RESULT_FILE}*")


class ArmResult(Protocol):
    """What an experiment records per arm and seed: a dataclass of JSON values with the job's hash."""

    job_hash: str


Result = TypeVar("Result", bound=ArmResult)


@dataclass(frozen=True)
class TrainedArm:
    """One arm and seed whose job has just trained, for the experiment to measure."""

    arm: str
    seed: int
    job: JobConfig
    job_hash: str
    result: TrainResult
    last: StepReport | None  # rank 0's last step report


def start_run_dir(experiment: BaseModel, output_dir: Path, layout: tuple[str, ...], fresh: bool) -> None:
    """Claim the experiment's run directory and save its resolved config there.

    Args:
        experiment: the experiment's config, saved as ``experiment.yaml``.
        output_dir: the run directory.
        layout: glob patterns of every top-level entry the experiment writes there (``experiment.yaml`` included).
        fresh: delete the run directory first (refused unless genint made it and it holds only ``layout``).
    """
    if fresh:
        remove_run_dir(output_dir, layout)
    claim_run_dir(output_dir)
    (output_dir / EXPERIMENT_CONFIG_FILE).write_text(resolved_yaml(experiment))


def arm_dir(output_dir: Path, arm: str, seed: int) -> Path:
    """The run directory of one arm and seed inside the experiment's."""
    return output_dir / ARMS_DIR / arm / f"seed{seed}"


def _saved(result_file: Path, result_type: type[Result]) -> Result | None:
    """The arm's saved result, or None when there is none or it has another format (then it is redone)."""
    try:
        return result_type(**json.loads(result_file.read_text()))
    except (FileNotFoundError, TypeError, ValueError):
        return None


def run_arm(arm: str, seed: int, job: JobConfig, measure: Callable[[TrainedArm], Result], result_type: type[Result]) -> Result:
    """Train and measure one arm and seed (Ray must be initialised), or return its saved result.

    Args:
        job: the arm's training job; its ``output_dir`` is the arm's run directory.
        measure: turns the trained arm into the result saved and returned (e.g. test accuracies).
        result_type: the result's dataclass, to read a saved result back.
    """
    what = f"arm {arm} (seed {seed})"
    digest = config_hash(job)
    result_file = job.output_dir / RESULT_FILE
    saved = _saved(result_file, result_type)
    if saved is not None and saved.job_hash == digest:
        return saved
    # A changed job must not resume the old one's checkpoints.
    remove_run_dir(job.output_dir, ARM_DIR_LAYOUT, what=what)
    claim_run_dir(job.output_dir, what=what)
    save_resolved(job)
    with progress_bar(f"train {arm} (seed {seed})") as update:
        result, last = train_job(job, update, use_gpu=cluster_has_gpus())
    measured = measure(TrainedArm(arm, seed, job, digest, result, last))
    # Atomic: a crash leaves no half-written result to reuse.
    write_durably(result_file, json.dumps(asdict(measured), indent=1).encode())
    return measured


def run_arms(arms: Sequence[str], seeds: Sequence[int], job_of: Callable[[str, int], JobConfig],
             measure: Callable[[TrainedArm], Result], result_type: type[Result]) -> list[Result]:
    """``run_arm`` for every arm and seed, arm by arm; the results in that order."""
    return [run_arm(arm, seed, job_of(arm, seed), measure, result_type) for arm in arms for seed in seeds]
