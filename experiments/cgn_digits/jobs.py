"""The genint jobs of a CGN digits run: one per generated stream (preparing the splits, training the
CGN once, generating), and one per arm and classifier seed reading the shared store."""

from cluster.config import JobConfig
from datagen.config import DatagenConfig, GeneratorConfig
from experiments.cgn_digits.config import ArmName, ExperimentConfig
from experiments.cgn_digits.data import SPLITS
from experiments.colored_digits.jobs import ORIGINAL_STREAM, data_dir, store_config, stream_of_split
from experiments.harness.arms import arm_dir
from shards.config import PrepareConfig
from trainers.config import ObjectiveConfig, StreamConfig

GENERATED_STREAMS = ("observational", "counterfactual")
TEST_STREAMS = ("test", "validation")  # the test is reported; validation is where settings are chosen
CGN_WEIGHTS = "generator-cgn"


def data_job(experiment: ExperimentConfig, stream: str = "counterfactual") -> JobConfig:
    """The job that prepares every split as a stream, trains the CGN (once) and generates ``stream``."""
    prepare = {stream_of_split(split): PrepareConfig(source=data_dir(experiment) / split, seed=experiment.data.seed, unit_size=500)
               for split in SPLITS}
    generator = GeneratorConfig(kind="cgn", weights=str(experiment.output_dir / CGN_WEIGHTS), cgn_train=experiment.cgn,
                                train_stream=ORIGINAL_STREAM)
    return JobConfig(
        name=f"{experiment.name}-data",
        output_dir=experiment.output_dir,
        shards=store_config(experiment, prepare),
        datagen=DatagenConfig(actors=experiment.datagen_actors, device="cpu", generator=generator,
                              strategy=getattr(experiment, stream), stream=stream, seeds_per_unit=20,
                              seed=experiment.data.seed, image_format="png"),
        train=experiment.train,
    )


def arm_streams(experiment: ExperimentConfig, arm: ArmName) -> dict[str, StreamConfig]:
    """What the arm's classifier reads each step: one stream, or half originals and half counterfactuals."""
    if arm == "original_counterfactual":
        half = max(1, experiment.batch_size // 2)
        return {ORIGINAL_STREAM: StreamConfig(batch_size=half), "counterfactual": StreamConfig(batch_size=half)}
    return {arm: StreamConfig(batch_size=experiment.batch_size)}


def arm_job(experiment: ExperimentConfig, arm: ArmName, seed: int) -> JobConfig:
    """The training job of one arm and classifier seed (no generation: it reads the shared store)."""
    train = experiment.train.model_copy(update={"streams": arm_streams(experiment, arm), "objective": ObjectiveConfig(), "seed": seed})
    return JobConfig(name=f"{experiment.name}-{arm}-seed{seed}", output_dir=arm_dir(experiment.output_dir, arm, seed),
                     shards=store_config(experiment), datagen=DatagenConfig(actors=0), train=train)
