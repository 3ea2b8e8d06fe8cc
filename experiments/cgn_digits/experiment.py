"""Running a CGN digits benchmark end to end through the real pipeline.

Stages, each reused when already done (``fresh`` deletes the run directory first): data splits ->
shards -> the CGN (``genint generator train``'s code, on the original stream) -> the observational and
counterfactual streams from datagen actors -> per arm and seed, a DeepSpeed classifier on Ray Train
reading its streams through DALI -> accuracy on the test and validation streams -> the report.
"""

from functools import partial
from pathlib import Path

import torch
from rich.console import RenderableType
from torchvision.models import vgg19

from cluster.config import JobConfig, config_hash
from cluster.generation import generation_pool, run_pool
from cluster.local_ray import ray_session
from cluster.progress import progress_bar
from cluster.run import prepare_generation, prepare_streams
from datagen.generators.cgn import load_cgn
from datagen.generators.cvae_training import load_stream_images
from experiments.cgn_digits.config import RANDOM_FEATURES_FILE, ExperimentConfig
from experiments.cgn_digits.data import write_benchmark_data
from experiments.cgn_digits.jobs import CGN_WEIGHTS, GENERATED_STREAMS, ORIGINAL_STREAM, TEST_STREAMS, arm_job, data_dir, data_job
from experiments.cgn_digits.report import (
    SAMPLES_PNG,
    ArmRun,
    CgnDigitsReport,
    counterfactual_mixing,
    markdown,
    mask_quality,
    rich_tables,
    samples_figure,
    summarise_arms,
    verdict,
)
from experiments.harness.arms import ARMS_DIR, EXPERIMENT_CONFIG_FILE, TrainedArm, run_arms, start_run_dir
from experiments.harness.report import REPORT_MD, write_report
from shards.files import write_durably_with
from shards.images import read_stream_samples
from trainers.evaluation import EvalConfig, evaluate
from trainers.models import load_classifier

RUN_DIR_LAYOUT = (EXPERIMENT_CONFIG_FILE, "config.yaml", "config.sha256", "data", "data.tmp", "shards", ARMS_DIR,
                  f"{CGN_WEIGHTS}*", f"{RANDOM_FEATURES_FILE}*", "report.*", f"{SAMPLES_PNG}*")


def _save_random_features(experiment: ExperimentConfig) -> None:
    """A seeded random-initialised VGG-19 for the texture loss, saved once (no pretrained one can be downloaded)."""
    path = experiment.cgn.texture_features
    if not experiment.random_texture_features or path is None or Path(path).exists():
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(experiment.cgn.seed)
        state = vgg19().features.state_dict()
    write_durably_with(Path(path), lambda handle: torch.save(state, handle))


def _measure(trained: TrainedArm) -> ArmRun:
    job: JobConfig = trained.job
    model = load_classifier(trained.result.checkpoint, job.train.model, job.train.num_classes)
    config = EvalConfig(loader=job.train.data)
    accuracy = {stream: 100 * evaluate(model, "shards", job.store_dir / stream, config).top1 for stream in TEST_STREAMS}
    return ArmRun(trained.arm, trained.seed, accuracy["test"], accuracy["validation"], trained.result.steps,
                  str(trained.result.checkpoint), trained.job_hash)


def run_experiment(experiment: ExperimentConfig, fresh: bool = False) -> CgnDigitsReport:
    """Run (or finish) the benchmark and write its report; return the report."""
    start_run_dir(experiment, experiment.output_dir, RUN_DIR_LAYOUT, fresh)
    write_benchmark_data(experiment.data, experiment.variant, data_dir(experiment))
    _save_random_features(experiment)
    digest = config_hash(data_job(experiment))
    prepare_streams(data_job(experiment), digest)
    with ray_session():
        for stream in GENERATED_STREAMS:
            job = data_job(experiment, stream)
            with progress_bar(f"generate {stream}") as update:
                run_pool(generation_pool(job, *prepare_generation(job, digest), update))  # trains the CGN first
        runs = run_arms(experiment.arms, experiment.seeds, partial(arm_job, experiment), _measure, ArmRun)
    generator = load_cgn(experiment.output_dir / CGN_WEIGHTS)
    counterfactuals = read_stream_samples(experiment.store_dir / "counterfactual", experiment.data.image_size)
    destination = experiment.output_dir / SAMPLES_PNG
    samples_figure(generator, load_stream_images(experiment.store_dir / ORIGINAL_STREAM, experiment.data.image_size), destination)
    arms = summarise_arms(experiment, runs)
    report = CgnDigitsReport(
        name=experiment.name, variant=experiment.variant, generator_id=generator.generator_id, arms=arms,
        mask_quality=mask_quality(generator, experiment.cgn.mask_target, experiment.cgn.edge_px),
        counterfactual_mixing=counterfactual_mixing(counterfactuals.provenance), verdict=verdict(experiment.variant, arms),
        samples_png=str(destination))
    write_report(markdown(report), report, experiment.output_dir)
    return report


def run(experiment: ExperimentConfig, fresh: bool) -> list[RenderableType]:
    """``run_experiment``, then what the console shows."""
    report = run_experiment(experiment, fresh)
    return [*rich_tables(report), f"verdict: {report.verdict}", f"report: {experiment.output_dir / REPORT_MD} (samples: {report.samples_png})"]
