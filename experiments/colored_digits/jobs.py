"""The genint jobs an experiment runs: one that prepares and generates the data, one per arm and seed.

All of them share the experiment's shard store, CVAE and directions, so each stage runs once and
every arm reads the same streams. Arms differ only in the streams they train on and the objective.
"""

from pathlib import Path

from cluster.config import JobConfig
from datagen.config import DatagenConfig, GeneratorConfig
from datagen.strategy_config import PairsConfig, StrategyConfig
from experiments.colored_digits.config import ArmName, ExperimentConfig
from experiments.colored_digits.data import environment_splits, split_names
from experiments.harness.arms import arm_dir
from shards.config import PrepareConfig, ShardStoreConfig
from trainers.config import ObjectiveConfig, StreamConfig

# Every split becomes a static stream of the same name; the training split is the "original" stream.
ORIGINAL_STREAM = "original"
GENERATED_STREAMS: tuple[ArmName, ...] = ("observational", "interventional")
# The CGN's stream, generated only when its arm runs; its generator lives beside the CVAE.
COUNTERFACTUAL_STREAM: ArmName = "counterfactual"
CGN_WEIGHTS = "generator-cgn"
# The pair arms' streams (seed 002), generated only when their arm runs: the interventional strategy with each
# image's partner of another class, from the same latent or (the control) an unrelated one.
PAIR_STREAMS: dict[ArmName, PairsConfig] = {"interventional_pairs": PairsConfig(partner="other_class"),
                                           "random_pairs": PairsConfig(partner="random")}
TEST_STREAMS = ("test_confounded", "test_causal")
# Drawn like the causal test with its own held-out colours: what settings are chosen on (e.g. the
# held-out real images of the causal bound), never the causal test.
VALIDATION_STREAM = "validation"
# Small shards: the streams hold a few thousand 32 px images.
MAX_SAMPLES_PER_SHARD = 256


def stream_of_split(split: str) -> str:
    return ORIGINAL_STREAM if split == "train" else split


def data_dir(experiment: ExperimentConfig) -> Path:
    return experiment.output_dir / "data"


def store_config(experiment: ExperimentConfig, prepare: dict[str, PrepareConfig] | None = None) -> ShardStoreConfig:
    """The experiment's shard store (also the CGN digits'): small shards under ``experiment.store_dir``."""
    return ShardStoreConfig(root=experiment.store_dir, max_samples_per_shard=MAX_SAMPLES_PER_SHARD, prepare=prepare or {})


def generated_streams(experiment: ExperimentConfig) -> tuple[ArmName, ...]:
    """The generated streams the experiment makes: the CVAE's two, and the CGN's when its arm runs."""
    asked = [stream for stream in (COUNTERFACTUAL_STREAM, *PAIR_STREAMS) if stream in experiment.arms]
    return (*GENERATED_STREAMS, *asked)


def stream_strategy(experiment: ExperimentConfig, stream: ArmName) -> StrategyConfig:
    """The strategy that generates ``stream``: the experiment's own, the pair streams' the interventional one with pairs."""
    if stream in PAIR_STREAMS:
        return experiment.interventional.model_copy(update={"pairs": PAIR_STREAMS[stream]})
    return getattr(experiment, stream)


def _generator(experiment: ExperimentConfig, stream: ArmName) -> GeneratorConfig:
    if stream == COUNTERFACTUAL_STREAM:
        weights = str(experiment.output_dir / CGN_WEIGHTS)
        return GeneratorConfig(kind="cgn", weights=weights, cgn_train=experiment.cgn, train_stream=ORIGINAL_STREAM)
    return GeneratorConfig(kind="cvae", train=experiment.generator, train_stream=ORIGINAL_STREAM)


def data_job(experiment: ExperimentConfig, stream: ArmName = "interventional") -> JobConfig:
    """The job that prepares every split as a stream, trains the stream's generator and generates ``stream``.

    Its output directory is the experiment's, where the CVAE, its directions and the CGN live.
    """
    prepare = {
        stream_of_split(split): PrepareConfig(source=data_dir(experiment) / split, seed=experiment.data.seed, unit_size=500)
        for split in split_names(experiment.data)
    }
    return JobConfig(
        name=f"{experiment.name}-data",
        output_dir=experiment.output_dir,
        shards=store_config(experiment, prepare),
        datagen=DatagenConfig(
            actors=experiment.datagen_actors,
            device="cpu",
            generator=_generator(experiment, stream),
            directions=experiment.directions.model_copy(update={"path": experiment.output_dir / "directions.npz"}),
            strategy=stream_strategy(experiment, stream),
            stream=stream,
            seeds_per_unit=20,
            seed=experiment.data.seed,
            image_format="png",
        ),
        train=experiment.train,
    )


def arm_streams(experiment: ExperimentConfig, arm: ArmName) -> dict[str, StreamConfig]:
    """What the arm's classifier reads each step; the generative arms see generated data only, as in the paper."""
    half = max(1, experiment.batch_size // 2)
    if arm == "irm":
        return {stream_of_split(split): StreamConfig(batch_size=half) for split in environment_splits(experiment.data)}
    if arm in PAIR_STREAMS:  # half as many pairs: as many images per step as the other arms
        return {arm: StreamConfig(batch_size=half, pairs=True)}
    return {stream_of_split("train") if arm == "original" else arm: StreamConfig(batch_size=experiment.batch_size)}


def arm_job(experiment: ExperimentConfig, arm: ArmName, seed: int) -> JobConfig:
    """The training job of one arm and classifier seed (no generation: it reads the shared store)."""
    objective = experiment.irm if arm == "irm" else experiment.gradient_supervision if arm in PAIR_STREAMS else ObjectiveConfig()
    train = experiment.train.model_copy(update={"streams": arm_streams(experiment, arm), "objective": objective, "seed": seed})
    return JobConfig(
        name=f"{experiment.name}-{arm}-seed{seed}",
        output_dir=arm_dir(experiment.output_dir, arm, seed),
        shards=store_config(experiment),
        datagen=DatagenConfig(actors=0),
        train=train,
    )
