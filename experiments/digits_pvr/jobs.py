"""The genint jobs of the digits-PVR benchmark: one training job per arm and seed over the shared store.

Arms differ only in their streams and objective: standard (the training grids, Eq. 1), augmentation
(half training grids, half swapped ones), iit (the seed's typed IIT, Eqn. 7), multitask (Eq. 1 plus a
linear head per quadrant predicting its digit, the seed's Eq. 8), iit_multitask (both) and untyped_iit
(the seed's "no typing" ablation: a variable is only swapped with the same variable). No stream is augmented by crop
or flip: a grid's layout is what its label depends on.
"""

from cluster.config import JobConfig
from datagen.config import DatagenConfig
from experiments.digits_pvr.config import ArmName, ExperimentConfig
from experiments.digits_pvr.data import AUGMENTED_STREAM, MAX_SAMPLES_PER_SHARD
from experiments.harness.arms import arm_dir
from shards.config import ShardStoreConfig
from trainers.config import ObjectiveConfig, StreamConfig

ORIGINAL_STREAM = "original"
EVAL_STREAMS = ("original", "validation", "test")


def stream_counts(experiment: ExperimentConfig) -> dict[str, int]:
    """Every stream the arms read or are measured on, and its grids; the augmented one only for its arm."""
    data = experiment.data
    counts = {ORIGINAL_STREAM: data.train, "validation": data.validation, "test": data.test}
    if "augmentation" in experiment.arms:
        counts[AUGMENTED_STREAM] = data.augmented
    return counts


def _streams(experiment: ExperimentConfig, arm: ArmName) -> dict[str, StreamConfig]:
    if arm == "augmentation":
        half = max(1, experiment.batch_size // 2)
        return {ORIGINAL_STREAM: StreamConfig(batch_size=half, augment="none"), AUGMENTED_STREAM: StreamConfig(batch_size=half, augment="none")}
    return {ORIGINAL_STREAM: StreamConfig(batch_size=experiment.batch_size, augment="none")}


def arm_objective(experiment: ExperimentConfig, arm: ArmName) -> ObjectiveConfig:
    """The arm's objective: Eq. 1 for standard and augmentation, the IIT objective otherwise (typed but for
    untyped_iit; its IIT loss off for multitask; the heads on for the two multi-task arms)."""
    if arm in ("standard", "augmentation"):
        return ObjectiveConfig()
    update = {"typed": arm != "untyped_iit"}
    if arm in ("multitask", "iit_multitask"):
        update["multitask_weight"] = experiment.multitask_weight
    if arm == "multitask":
        update["iit_weight"] = 0.0
    return ObjectiveConfig.model_validate(experiment.iit.model_dump() | update)


def arm_job(experiment: ExperimentConfig, arm: ArmName, seed: int) -> JobConfig:
    """The training job of one arm and classifier seed (no generation: it reads the shared store)."""
    train = experiment.train.model_copy(update={"streams": _streams(experiment, arm), "objective": arm_objective(experiment, arm),
                                                "seed": seed})
    return JobConfig(
        name=f"{experiment.name}-{arm}-seed{seed}",
        output_dir=arm_dir(experiment.output_dir, arm, seed),
        shards=ShardStoreConfig(root=experiment.store_dir, max_samples_per_shard=MAX_SAMPLES_PER_SHARD),
        datagen=DatagenConfig(actors=0),
        train=train,
    )
