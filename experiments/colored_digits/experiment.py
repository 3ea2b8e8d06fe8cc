"""Running the Colored Digits experiment end to end through the real pipeline.

Stages, each reused when it is already done (``fresh`` deletes the run directory first):
data splits -> shards (``genint prepare``'s code) -> CVAE -> directions -> the observational stream
from datagen actors -> with ``search``, the original arm, then the causal-bound search on the
validation stream that chooses the interventional strategy -> the interventional stream -> with the
counterfactual arm, the CGN and its counterfactual stream -> per arm
and seed, a DeepSpeed classifier on Ray Train reading its streams through DALI -> evaluation on
both test streams -> the correlation analysis of the streams -> the explanations of every classifier
(E[|grad|] along background colour, GradCAM IoU) on the validation split -> the report.
"""

from functools import partial
from pathlib import Path

from rich.console import RenderableType

from cluster.config import JobConfig, config_hash
from cluster.generation import generation_pool, run_pool
from cluster.local_ray import ray_session
from cluster.progress import progress_bar
from cluster.run import prepare_generation, prepare_streams
from experiments.colored_digits.analyses import CORRELATION_FILE, SEARCH_DIR, analyse_correlation, choose_interventional_strategy
from experiments.colored_digits.config import ExperimentConfig
from experiments.colored_digits.data import write_experiment_data
from experiments.colored_digits.explanations import EXPLAIN_DIR, explain_arms
from experiments.colored_digits.jobs import (
    COUNTERFACTUAL_STREAM,
    GENERATED_STREAMS,
    ORIGINAL_STREAM,
    PAIR_STREAMS,
    TEST_STREAMS,
    VALIDATION_STREAM,
    arm_job,
    data_dir,
    data_job,
)
from experiments.colored_digits.report import SAMPLES_PNG, ArmRun, ExperimentReport, build_report, markdown, rich_tables
from experiments.harness.arms import ARMS_DIR, EXPERIMENT_CONFIG_FILE, TrainedArm, run_arms, start_run_dir
from experiments.harness.report import REPORT_MD, write_report
from trainers.evaluation import EvalConfig, evaluate
from trainers.models import load_classifier

# Every top-level entry the experiment writes in its run directory (temporary names included):
# `--fresh` deletes the directory only when it holds nothing else.
RUN_DIR_LAYOUT = (EXPERIMENT_CONFIG_FILE, "config.yaml", "config.sha256", "data", "data.tmp", "shards", ARMS_DIR,
                  "generator*", "directions*", "report.*", f"{SAMPLES_PNG}*", SEARCH_DIR, f"{CORRELATION_FILE}*", EXPLAIN_DIR)


def _generate_stream(experiment: ExperimentConfig, stream: str, digest: str) -> None:
    job = data_job(experiment, stream)
    with progress_bar(f"generate {stream}") as update:
        run_pool(generation_pool(job, *prepare_generation(job, digest), update))


def _evaluate(job: JobConfig, checkpoint: Path) -> dict[str, float]:
    model = load_classifier(checkpoint, job.train.model, job.train.num_classes)
    config = EvalConfig(loader=job.train.data)
    return {stream: 100 * evaluate(model, "shards", job.store_dir / stream, config).top1 for stream in (*TEST_STREAMS, VALIDATION_STREAM)}


def _measure(trained: TrainedArm) -> ArmRun:
    """An arm's accuracies on both test streams and on validation."""
    accuracy = _evaluate(trained.job, trained.result.checkpoint)
    return ArmRun(trained.arm, trained.seed, accuracy["test_confounded"], accuracy["test_causal"], accuracy[VALIDATION_STREAM],
                  trained.result.steps, trained.last.loss, str(trained.result.checkpoint), trained.job_hash)


def run_experiment(experiment: ExperimentConfig, fresh: bool = False) -> ExperimentReport:
    """Run (or finish) the experiment and write its report; return the report."""
    start_run_dir(experiment, experiment.output_dir, RUN_DIR_LAYOUT, fresh)
    palette = write_experiment_data(experiment.data, data_dir(experiment))
    digest = config_hash(data_job(experiment))
    prepare_streams(data_job(experiment), digest)
    run_arms_of = partial(run_arms, seeds=experiment.seeds, job_of=partial(arm_job, experiment), measure=_measure, result_type=ArmRun)
    with ray_session():
        _generate_stream(experiment, "observational", digest)
        search = None
        if experiment.search is not None:
            # The original arm trains first: its first classifier is the search's feature extractor.
            originals = run_arms_of(["original"])
            search = choose_interventional_strategy(experiment, Path(originals[0].checkpoint), originals[0].job_hash)
            experiment = experiment.model_copy(update={"interventional": search.chosen})
        _generate_stream(experiment, "interventional", digest)
        if COUNTERFACTUAL_STREAM in experiment.arms:
            _generate_stream(experiment, COUNTERFACTUAL_STREAM, digest)  # trains the CGN first
        for stream in PAIR_STREAMS:
            if stream in experiment.arms:
                _generate_stream(experiment, stream, digest)
        runs = run_arms_of(experiment.arms)  # the original arm's are reused
    correlation = analyse_correlation(experiment, [ORIGINAL_STREAM, *GENERATED_STREAMS], experiment.interventional)
    explanations = explain_arms(experiment, palette, runs)
    report = build_report(experiment, palette, runs, search, correlation, explanations)
    write_report(markdown(report), report, experiment.output_dir)
    return report


def run(experiment: ExperimentConfig, fresh: bool) -> list[RenderableType]:
    """``run_experiment``, then what the console shows: the tables, the verdict and where the report is."""
    report = run_experiment(experiment, fresh)
    return [*rich_tables(report), f"verdict: {report.verdict}", f"explanations: {report.explanations.verdict}",
            f"report: {experiment.output_dir / REPORT_MD} (and report.json, samples: {report.samples_png})"]
