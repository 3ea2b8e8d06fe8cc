"""Running the Colored Digits experiment end to end through the real pipeline.

Stages, each reused when it is already done (``fresh`` deletes the run directory first):
data splits -> shards (``genint prepare``'s code) -> CVAE -> directions -> observational and
interventional streams from datagen actors -> per arm and seed, a DeepSpeed classifier on Ray
Train reading its streams through DALI -> evaluation on both test streams -> the report.
"""

import json
from dataclasses import asdict
from pathlib import Path

from cluster.colored_digits.config import ArmName, ExperimentConfig
from cluster.colored_digits.data import write_experiment_data
from cluster.colored_digits.jobs import GENERATED_STREAMS, TEST_STREAMS, arm_dir, arm_job, data_dir, data_job
from cluster.colored_digits.report import ArmRun, ExperimentReport, build_report, write_report
from cluster.config import JobConfig, config_hash, resolved_yaml, save_resolved
from cluster.generation import generation_pool, run_pool
from cluster.local_ray import cluster_has_gpus, ray_session
from cluster.progress import progress_bar
from cluster.run import prepare_generation, prepare_streams
from cluster.run_dirs import claim_run_dir, remove_run_dir
from cluster.training import train_job
from trainers.evaluation import EvalConfig, evaluate
from trainers.models import load_classifier

RESULT_FILE = "result.json"
EXPERIMENT_CONFIG_FILE = "experiment.yaml"
# Every top-level entry the experiment writes in its run directory (temporary names included):
# `--fresh` deletes the directory only when it holds nothing else.
RUN_DIR_LAYOUT = (EXPERIMENT_CONFIG_FILE, "config.yaml", "config.sha256", "data", "data.tmp", "shards", "arms",
                  "generator*", "directions*", "report.*", "samples.png*")
# An arm's run directory: its job's config, training (checkpoints, Ray Train's storage) and the result.
ARM_DIR_LAYOUT = ("config.yaml", "config.sha256", "train", f"{RESULT_FILE}*")


def _generate_streams(experiment: ExperimentConfig, digest: str) -> None:
    for stream in GENERATED_STREAMS:
        job = data_job(experiment, stream)
        with progress_bar(f"generate {stream}") as update:
            run_pool(generation_pool(job, *prepare_generation(job, digest), update))


def _evaluate(job: JobConfig, checkpoint: Path) -> dict[str, float]:
    model = load_classifier(checkpoint, job.train.model, job.train.num_classes)
    config = EvalConfig(loader=job.train.data)
    return {stream: 100 * evaluate(model, "shards", job.store_dir / stream, config).top1 for stream in TEST_STREAMS}


def _saved_run(result_file: Path) -> ArmRun | None:
    """The arm's saved result, or None when there is none or it has another format (then it is redone)."""
    try:
        return ArmRun(**json.loads(result_file.read_text()))
    except (FileNotFoundError, TypeError):
        return None


def _train_arm(experiment: ExperimentConfig, arm: ArmName, seed: int) -> ArmRun:
    """Train and evaluate one arm and seed, or return its saved result when its job is unchanged."""
    job = arm_job(experiment, arm, seed)
    digest = config_hash(job)
    result_file = arm_dir(experiment, arm, seed) / RESULT_FILE
    saved = _saved_run(result_file)
    if saved is not None and saved.job_hash == digest:
        return saved
    # A changed job must not resume the old one's checkpoints.
    remove_run_dir(job.output_dir, ARM_DIR_LAYOUT, what=f"arm {arm} (seed {seed})")
    claim_run_dir(job.output_dir, what=f"arm {arm} (seed {seed})")
    save_resolved(job)
    with progress_bar(f"train {arm} (seed {seed})") as update:
        result, last = train_job(job, update, use_gpu=cluster_has_gpus())
    accuracy = _evaluate(job, result.checkpoint)
    run = ArmRun(arm, seed, accuracy["test_confounded"], accuracy["test_causal"], result.steps, last.loss, str(result.checkpoint), digest)
    temporary = result_file.with_name(result_file.name + ".tmp")
    temporary.write_text(json.dumps(asdict(run), indent=1))
    temporary.replace(result_file)  # a crash leaves no half-written result to reuse
    return run


def run_experiment(experiment: ExperimentConfig, fresh: bool = False) -> ExperimentReport:
    """Run (or finish) the experiment and write its report; return the report."""
    if fresh:
        remove_run_dir(experiment.output_dir, RUN_DIR_LAYOUT)
    claim_run_dir(experiment.output_dir)
    (experiment.output_dir / EXPERIMENT_CONFIG_FILE).write_text(resolved_yaml(experiment))
    palette = write_experiment_data(experiment.data, data_dir(experiment))
    digest = config_hash(data_job(experiment))
    prepare_streams(data_job(experiment), digest)
    with ray_session():
        _generate_streams(experiment, digest)
        runs = [_train_arm(experiment, arm, seed) for arm in experiment.arms for seed in experiment.seeds]
    report = build_report(experiment, palette, runs)
    write_report(report, experiment.output_dir)
    return report
