"""Colored Digits data: the palette, the splits and the confounding they carry (no Ray)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from cluster.cli import main
from cluster.config import load_config
from cluster.errors import ClusterError, ConfigError
from cluster.run_dirs import claim_run_dir
from datagen.strategy_config import StrategyConfig
from experiments.colored_digits.analyses import BoundSummary, CorrelationSummary, StrategyBound, StreamCorrelationSummary
from experiments.colored_digits.config import DigitsDataConfig, ExperimentConfig
from experiments.colored_digits.data import NUM_CLASSES, load_palette, make_splits, split_names, write_experiment_data
from experiments.colored_digits.painter import digit_strokes, paint
from experiments.colored_digits.palette import BackgroundColour, all_colours, background_colours, distance_to_palette, make_palette
from experiments.colored_digits.report import FIDELITY_GOALS, ArmRun, ExperimentReport, markdown, rich_tables, summarise_arm, verdict
from experiments.harness.fidelity import stream_fidelity

EXPERIMENT_CONFIG = Path(__file__).parent.parent / "configs" / "experiments" / "colored-digits.yaml"


def test_palette_ties_two_colours_to_each_class_and_holds_the_rest_out():
    palette = make_palette(NUM_CLASSES, seed=0)
    training = {tuple(colour) for colour in palette.training_colours.tolist()}
    held_out = {tuple(colour) for colour in palette.held_out.tolist()}
    assert len(training) == 2 * NUM_CLASSES  # no colour is shared by two classes
    assert held_out and not training & held_out
    assert training | held_out == {tuple(colour) for colour in all_colours().tolist()}
    assert (1.0, 1.0, 1.0) not in training | held_out  # white strokes stay visible
    assert make_palette(NUM_CLASSES, seed=1).class_colours.tolist() != palette.class_colours.tolist()


def test_splits_are_disjoint_seeded_and_confounded_only_where_they_should_be():
    _, labels = digit_strokes(8)
    labels = labels.numpy()
    palette, splits = make_splits(DigitsDataConfig(), labels)
    train, confounded, causal = splits["train"], splits["test_confounded"], splits["test_causal"]
    indices = np.concatenate([train.indices, confounded.indices, causal.indices, splits["validation"].indices])
    assert len(indices) == len(set(indices.tolist())) == len(labels)
    assert sorted(np.concatenate([splits["train_env0"].indices, splits["train_env1"].indices]).tolist()) == sorted(train.indices.tolist())
    for split in (train, confounded):  # the background is one of the class's two colours
        expected = palette.class_colours[labels[split.indices], split.environments]
        assert np.array_equal(split.backgrounds, expected)
    # In the causal test the colour says little about the class, and held-out colours appear.
    tied = [any(np.array_equal(background, colour) for colour in palette.class_colours[label])
            for background, label in zip(causal.backgrounds, labels[causal.indices])]
    assert np.mean(tied) < 0.2
    assert (distance_to_palette(causal.backgrounds, palette.held_out) == 0).sum() > 10
    again = make_splits(DigitsDataConfig(), labels)[1]
    assert np.array_equal(again["test_causal"].backgrounds, causal.backgrounds)


def test_background_is_read_from_the_corners_of_painted_digits():
    strokes, _ = digit_strokes(32, count=40)
    colours = torch.from_numpy(all_colours()[np.arange(40) % len(all_colours())])
    measured = background_colours(paint(strokes, colours).numpy())
    assert np.abs(measured - colours.numpy()).max() < 0.02


def test_data_is_written_once_and_another_config_is_refused(tmp_path):
    palette = write_experiment_data(DigitsDataConfig(), tmp_path / "data")
    assert {path.name for path in (tmp_path / "data").iterdir()} == {*split_names(DigitsDataConfig()), "palette.json"}
    assert sum(1 for _ in (tmp_path / "data" / "test_causal").rglob("*.png")) == round(0.2 * 1797)
    assert np.array_equal(load_palette(tmp_path / "data").class_colours, palette.class_colours)
    written = (tmp_path / "data" / "palette.json").stat().st_mtime_ns
    write_experiment_data(DigitsDataConfig(), tmp_path / "data")
    assert (tmp_path / "data" / "palette.json").stat().st_mtime_ns == written
    with pytest.raises(ClusterError, match="other settings"):
        write_experiment_data(DigitsDataConfig(seed=5), tmp_path / "data")


def test_shipped_config_is_valid_and_bad_arms_are_one_line(tmp_path):
    experiment = load_config(EXPERIMENT_CONFIG, model=ExperimentConfig)
    assert experiment.arms == ["original", "observational", "interventional", "irm"] and len(experiment.seeds) >= 3
    with pytest.raises(ConfigError, match=r"colored-digits.yaml: arms.0 must be one of"):
        load_config(EXPERIMENT_CONFIG, ["arms=[baseline]"], model=ExperimentConfig)
    with pytest.raises(ConfigError, match="interventional.kind must be intervention"):
        load_config(EXPERIMENT_CONFIG, ["interventional.kind=observational"], model=ExperimentConfig)


def _run(arm: str, seed: int, confounded: float, causal: float, validation: float = 50.0) -> ArmRun:
    return ArmRun(arm, seed, confounded, causal, validation, steps=10, final_loss=0.1, checkpoint="-", job_hash="-")


def test_verdict_says_when_the_interventional_arm_does_not_win():
    arms = [summarise_arm("original", [_run("original", 0, 99.0, 9.0, 12.0), _run("original", 1, 97.0, 11.0, 14.0)]),
            summarise_arm("interventional", [_run("interventional", 0, 60.0, 8.0)])]
    assert arms[0].causal_mean == 10.0 and arms[0].causal_std == pytest.approx(1.414, abs=1e-3)
    assert arms[0].validation_percent == [12.0, 14.0] and arms[0].validation_mean == 13.0
    assert "does NOT beat" in verdict(arms) and "original data" in verdict(arms)
    arms[1] = summarise_arm("interventional", [_run("interventional", 0, 60.0, 30.0)])
    assert verdict(arms).startswith("interventional CVAE beats")
    # 11.0 against 10.0 +- 1.414: ahead, but within the seeds' spread.
    arms[1] = summarise_arm("interventional", [_run("interventional", 0, 60.0, 11.0)])
    assert verdict(arms).startswith("interventional CVAE is level with")


def test_experiment_over_data_of_other_settings_is_one_line_and_keeps_the_data(tmp_path, capsys):
    claim_run_dir(tmp_path / "run")  # as an earlier run of the experiment left it
    write_experiment_data(DigitsDataConfig(), tmp_path / "run" / "data")
    before = (tmp_path / "run" / "data" / "palette.json").read_bytes()
    assert main(["experiment", str(EXPERIMENT_CONFIG), "--set", f"output_dir={tmp_path / 'run'}", "--set", "data.seed=5"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "holds data made with other settings" in error
    assert (tmp_path / "run" / "data" / "palette.json").read_bytes() == before


def test_validation_and_causal_test_are_drawn_alike_with_disjoint_held_out_colours():
    _, labels = digit_strokes(8)
    labels = labels.numpy()
    palette, splits = make_splits(DigitsDataConfig(), labels)
    assert len(palette.validation_colours) >= 1 and len(palette.test_colours) >= 1
    assert not {tuple(colour) for colour in palette.validation_colours.tolist()} & {tuple(colour) for colour in palette.test_colours.tolist()}
    indices = np.concatenate([splits[name].indices for name in ("train", "test_confounded", "validation", "test_causal")])
    assert len(indices) == len(set(indices.tolist())) == len(labels)
    assert len(splits["validation"].indices) == round(0.1 * len(labels))
    for name, own, other in (("validation", palette.validation_colours, palette.test_colours),
                             ("test_causal", palette.test_colours, palette.validation_colours)):
        backgrounds = splits[name].backgrounds
        allowed = np.concatenate([palette.training_colours, own])
        assert (distance_to_palette(backgrounds, allowed) == 0).all(), name  # never the other set's held-out colours
        assert (distance_to_palette(backgrounds, other) > 0).all(), name
        assert (distance_to_palette(backgrounds, own) == 0).any(), name
        tied = [any(np.array_equal(background, colour) for colour in palette.class_colours[label])
                for background, label in zip(backgrounds, labels[splits[name].indices])]
        assert np.mean(tied) < 0.2, name  # the colour says little about the class


def test_reference_variant_ties_one_colour_to_each_class_and_has_no_environments():
    config = DigitsDataConfig(colours_per_class=1)
    _, labels = digit_strokes(8)
    palette, splits = make_splits(config, labels.numpy())
    assert palette.class_colours.shape == (NUM_CLASSES, 1, 3)
    assert len(palette.held_out) == len(all_colours()) - NUM_CLASSES
    assert set(splits) == set(split_names(config)) and not any(name.startswith("train_env") for name in splits)
    train = splits["train"]
    assert np.array_equal(train.backgrounds, palette.class_colours[labels.numpy()[train.indices], 0])


def test_irm_without_two_colours_per_class_is_one_line():
    with pytest.raises(ConfigError) as error:
        load_config(EXPERIMENT_CONFIG, ["data.colours_per_class=1"], model=ExperimentConfig)
    assert "irm needs data.colours_per_class >= 2" in str(error.value) and "\n" not in str(error.value)
    experiment = load_config(EXPERIMENT_CONFIG, ["data.colours_per_class=1", "arms=[original,observational,interventional]"], model=ExperimentConfig)
    assert experiment.data.colours_per_class == 1


def test_background_fidelity_of_painted_digits_counts_new_and_other_class_colours():
    palette = make_palette(NUM_CLASSES, seed=0)
    strokes, _ = digit_strokes(32, count=60)
    labels = np.arange(60) % NUM_CLASSES
    nuisance = BackgroundColour(palette)
    own = paint(strokes, torch.from_numpy(palette.class_colours[labels, np.arange(60) % 2])).numpy()
    fidelity = stream_fidelity("observational", own, labels, nuisance, FIDELITY_GOALS["observational"])
    assert (fidelity.new_share, fidelity.class_match, fidelity.goal_met) == (0.0, 1.0, True)
    shifted = (labels + 1) % NUM_CLASSES  # every image wears the next class's colour
    fidelity = stream_fidelity("observational", own, shifted, nuisance, FIDELITY_GOALS["observational"])
    assert (fidelity.new_share, fidelity.class_match, fidelity.goal_met) == (0.0, 0.0, False)
    # Blends of two palette colours lie a quarter away from every colour: new backgrounds.
    blends = paint(strokes, torch.from_numpy(palette.class_colours[labels, 0] * 0.5 + palette.class_colours[labels, 1] * 0.5)).numpy()
    distance = distance_to_palette(background_colours(blends), palette.training_colours)
    fidelity = stream_fidelity("interventional", blends, labels, nuisance, FIDELITY_GOALS["interventional"])
    assert fidelity.new_share == float(np.mean(distance > nuisance.tolerance)) > 0.5 and fidelity.goal_met


def test_report_shows_each_streams_fidelity_with_its_goal_before_the_accuracies():
    palette = make_palette(NUM_CLASSES, seed=0)
    strokes, _ = digit_strokes(32, count=20)
    labels = np.arange(20) % NUM_CLASSES
    images = paint(strokes, torch.from_numpy(palette.class_colours[labels, 0])).numpy()
    nuisance = BackgroundColour(palette)
    streams = [stream_fidelity(stream, images, labels, nuisance, FIDELITY_GOALS.get(stream)) for stream in ("original", "observational", "interventional")]
    arms = [summarise_arm("original", [_run("original", 0, 99.0, 9.0)])]
    chosen = StrategyConfig(kind="intervention", top_k=2, components_per_seed=2, scale=2.0)
    search = BoundSummary(strategies=[StrategyBound(label="t=1 k=2 s=1", log_p_x_given_z=-4.7, chosen=False),
                                      StrategyBound(label="t=1 k=2 s=2", log_p_x_given_z=-4.5, chosen=True)],
                          chosen=chosen, chosen_label="t=1 k=2 s=2", chosen_bound=-4.5, paper_chosen_bound=-5.162,
                          real_stream="validation", real_images=180, figure="strategy-search/bounds.png")
    correlation = CorrelationSummary(streams=[StreamCorrelationSummary(stream="original", held_out_samples=216, multiple_of_chance=8.7)],
                                     regressor="regressor nuisance_cnn on interventional")
    report = ExperimentReport(name="x", colours_per_class=2, nuisance=nuisance.name, streams=streams, strategy_search=search,
                              correlation=correlation, arms=arms, verdict="v", samples_png="s.png")
    text = markdown(report)
    assert "| observational | 20 | 0.0 % | 100.0 % | <= 5 % new, >= 90 % class match | yes |" in text
    assert "| interventional | 20 | 0.0 % | 100.0 % | >= 50 % new | NO |" in text
    assert "| t=1 k=2 s=2 | -4.5000 | yes |" in text and "![bounds](strategy-search/bounds.png)" in text
    assert "| original | 216 | 8.70 |" in text
    # Fidelity, then the search, then the correlation analysis, then the accuracies.
    assert text.index("new background colours") < text.index("log P(x|z)") < text.index("x chance") < text.index("confounded test %")
    assert [table.title for table in rich_tables(report)] == [
        "Generator fidelity", "Causal bound on 'validation'", "Correlation analysis (Fig. 3)", "Colored Digits (Table 5)"]
    unsearched = markdown(report.model_copy(update={"strategy_search": None}))
    assert "no causal-bound search" in unsearched and "log P(x|z) per real image" not in unsearched
