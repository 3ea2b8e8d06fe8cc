"""The Colored Digits pair arms (seed 002): their streams are the interventional strategy with pairs, and each
arm trains gradient supervision on its own paired stream with as many images per step as the other arms."""

from pathlib import Path

from cluster.config import load_config
from experiments.colored_digits.config import ExperimentConfig
from experiments.colored_digits.jobs import arm_job, generated_streams, stream_strategy

CONFIG = Path(__file__).parent.parent / "configs" / "experiments" / "colored-digits.yaml"


def test_the_pair_arms_generate_paired_interventional_streams_and_train_gs_on_them(tmp_path):
    experiment = load_config(CONFIG, [f"output_dir={tmp_path}", "arms=[original, interventional, interventional_pairs, random_pairs]"],
                             model=ExperimentConfig)
    assert generated_streams(experiment) == ("observational", "interventional", "interventional_pairs", "random_pairs")
    for stream, partner in [("interventional_pairs", "other_class"), ("random_pairs", "random")]:
        strategy = stream_strategy(experiment, stream)
        assert strategy.pairs.partner == partner
        assert strategy.model_copy(update={"pairs": None}) == experiment.interventional
        train = arm_job(experiment, stream, seed=1).train
        assert train.objective == experiment.gradient_supervision and train.seed == 1
        assert {name: (config.batch_size, config.pairs) for name, config in train.streams.items()} == {stream: (experiment.batch_size // 2, True)}
        assert train.micro_batch_size == arm_job(experiment, "interventional", seed=1).train.micro_batch_size
    assert "pairs" not in stream_strategy(experiment, "interventional").model_dump(mode="json")  # the plain stream is unchanged
    tuned = load_config(CONFIG, [f"output_dir={tmp_path}", "gradient_supervision.gs_lambda=10"], model=ExperimentConfig)
    assert (tuned.gradient_supervision.name, tuned.gradient_supervision.gs_lambda) == ("gradient_supervision", 10.0)
