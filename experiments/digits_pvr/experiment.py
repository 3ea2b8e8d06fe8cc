"""Running the digits-PVR benchmark end to end through the real pipeline.

Stages, each reused when already done (``fresh`` deletes the run directory first): the grid streams
(the real ShardWriter, each sample's digits in its json) -> per arm and seed, a DeepSpeed classifier on
Ray Train reading its streams through DALI (IIT arms get the digits with every batch) -> behavioural
accuracy and IIA on the training, validation and test streams -> the report.
"""

from functools import partial

from rich.console import RenderableType

from cluster.local_ray import ray_session
from experiments.digits_pvr.config import ExperimentConfig
from experiments.digits_pvr.data import write_streams
from experiments.digits_pvr.jobs import EVAL_STREAMS, arm_job, stream_counts
from experiments.digits_pvr.report import ArmRun, build_report, markdown, rich_tables
from experiments.harness.arms import ARMS_DIR, EXPERIMENT_CONFIG_FILE, TrainedArm, run_arms, start_run_dir
from experiments.harness.report import REPORT_MD, write_report
from trainers.causal_models import causal_model
from trainers.iia import behavioural_accuracy, interchange_intervention_accuracy, read_stream_with_values, sampled_triples
from trainers.models import load_classifier

RUN_DIR_LAYOUT = (EXPERIMENT_CONFIG_FILE, "shards", ARMS_DIR, "report.*")


def _measure(experiment: ExperimentConfig, trained: TrainedArm) -> ArmRun:
    """An arm's behavioural accuracy and IIA (typed at the IIT alignment, per the seed's Eqn. 3) on each eval stream."""
    train = trained.job.train
    model = load_classifier(trained.result.checkpoint, train.model, train.num_classes)
    causal = causal_model(experiment.iit.causal_model)
    measured = {}
    for stream in EVAL_STREAMS:
        data = read_stream_with_values(experiment.store_dir / stream, causal, train.data)
        triples = sampled_triples(len(data.labels), len(causal.variables), experiment.iia_triples, seed=trained.seed)
        measured[stream] = (100 * behavioural_accuracy(model, data.images, data.labels),
                            100 * interchange_intervention_accuracy(model, experiment.iit.alignment, causal, data.images, data.values, triples))
    (train_b, train_i), (val_b, val_i), (test_b, test_i) = (measured[stream] for stream in EVAL_STREAMS)
    return ArmRun(trained.arm, trained.seed, train_b, val_b, test_b, train_i, val_i, test_i, trained.result.steps,
                  trained.last.loss, str(trained.result.checkpoint), trained.job_hash)


def run(experiment: ExperimentConfig, fresh: bool) -> list[RenderableType]:
    """Run (or finish) the benchmark and write its report; return what the console shows."""
    start_run_dir(experiment, experiment.output_dir, RUN_DIR_LAYOUT, fresh)
    experiment.store_dir.mkdir(exist_ok=True)
    write_streams(experiment.store_dir, stream_counts(experiment), experiment.data.seed)
    with ray_session():
        runs = run_arms(experiment.arms, experiment.seeds, partial(arm_job, experiment), partial(_measure, experiment), ArmRun)
    report = build_report(experiment, runs)
    write_report(markdown(report), report, experiment.output_dir)
    return [*rich_tables(report), f"verdict: {report.verdict}", f"report: {experiment.output_dir / REPORT_MD} (and report.json)"]
