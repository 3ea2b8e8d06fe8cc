"""The experiments' registry and harness, without Ray: kinds, run directories, arm reuse by config
hash, and the report's statistics, tables and figure. Training an arm is covered end to end by
tests/test_colored_digits.py."""

import json
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from pydantic import BaseModel

from cluster.config import JobConfig, config_hash
from cluster.errors import ClusterError, ConfigError
from cluster.run_dirs import MARKER_FILE, claim_run_dir
from experiments.harness.arms import EXPERIMENT_CONFIG_FILE, RESULT_FILE, arm_dir, run_arm, start_run_dir
from experiments.harness.fidelity import FidelityGoal, fidelity_rows, new_and_matching, stream_fidelity
from experiments.harness.report import (
    REPORT_JSON,
    REPORT_MD,
    markdown_table,
    mean_and_std,
    plus_minus,
    rich_table,
    samples_grid,
    write_report,
)
from experiments.registry import EXPERIMENTS, load_experiment

CONFIGS = Path(__file__).parent.parent / "configs" / "experiments"


def test_every_shipped_experiment_config_loads_through_its_kind_and_every_kind_has_one():
    kinds = set()
    for path in sorted(CONFIGS.glob("*.yaml")):
        experiment = load_experiment(path)
        assert experiment.config.kind == experiment.kind == yaml.safe_load(path.read_text())["kind"]
        kinds.add(experiment.kind)
    assert kinds == set(EXPERIMENTS)
    for package in EXPERIMENTS.values():  # the run function is found without running anything
        assert callable(import_module(f"{package}.experiment").run)


# The registry's kinds in its order (the test above ties them to the shipped configs), so a new kind
# changes the expected message without editing these cases.
KNOWN_KINDS = ", ".join(EXPERIMENTS)


@pytest.mark.parametrize("text, message", [
    ("name: x\n", f"kind is required: it names the experiment (known kinds: {KNOWN_KINDS})"),
    ("kind: colored_mnist\n", f"kind must be one of the known kinds: {KNOWN_KINDS} (got 'colored_mnist')"),
    ("kind: {a: 1}\n", f"kind must be one of the known kinds: {KNOWN_KINDS} (got {{'a': 1}})"),
])
def test_a_missing_or_unknown_kind_is_one_line_naming_the_known_kinds(tmp_path, text, message):
    path = tmp_path / "experiment.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_experiment(path)
    assert str(error.value) == f"{path}: {message}"


def test_set_can_choose_the_kind_and_the_kinds_model_checks_the_rest(tmp_path):
    path = tmp_path / "experiment.yaml"
    path.write_text((CONFIGS / "colored-digits.yaml").read_text().replace("kind: colored_digits", "kind: other"))
    assert load_experiment(path, ["kind=colored_digits"]).kind == "colored_digits"
    with pytest.raises(ConfigError, match="batch_size must be <= 65536"):
        load_experiment(path, ["kind=colored_digits", "batch_size=100000000"])


@dataclass(frozen=True)
class Result:
    arm: str
    seed: int
    accuracy: float
    job_hash: str


def _job(output_dir: Path) -> JobConfig:
    return JobConfig(name="arm", output_dir=output_dir, train={"model": "small_cnn", "streams": {"original": {"batch_size": 4}}})


def _must_not_train(trained):
    raise AssertionError("a finished arm was trained again")


def test_a_finished_arm_with_the_same_job_hash_is_reused_without_training(tmp_path):
    job = _job(arm_dir(tmp_path, "original", 3))
    assert job.output_dir == tmp_path / "arms" / "original" / "seed3"
    claim_run_dir(job.output_dir)
    saved = Result("original", 3, 97.5, config_hash(job))
    (job.output_dir / RESULT_FILE).write_text(json.dumps(saved.__dict__))
    assert run_arm("original", 3, job, _must_not_train, Result) == saved


def test_an_arm_directory_holding_a_users_file_is_not_deleted_to_retrain(tmp_path):
    job = _job(arm_dir(tmp_path, "irm", 0))
    claim_run_dir(job.output_dir)
    (job.output_dir / RESULT_FILE).write_text(json.dumps(Result("irm", 0, 50.0, "another job").__dict__))
    (job.output_dir / "notes.txt").write_text("mine")
    with pytest.raises(ClusterError, match=r"arm irm \(seed 0\) .*: not deleted: it holds files genint did not write \(notes.txt\)"):
        run_arm("irm", 0, job, _must_not_train, Result)
    assert (job.output_dir / "notes.txt").read_text() == "mine"


def test_start_run_dir_claims_saves_the_config_and_fresh_deletes_only_its_layout(tmp_path):
    output = tmp_path / "run"
    experiment = load_experiment(CONFIGS / "colored-digits.yaml", [f"output_dir={output}"]).config
    layout = (EXPERIMENT_CONFIG_FILE, "shards")
    start_run_dir(experiment, output, layout, fresh=False)
    assert (output / MARKER_FILE).is_file()
    saved = yaml.safe_load((output / EXPERIMENT_CONFIG_FILE).read_text())
    assert type(experiment).model_validate(saved) == experiment
    (output / "shards").mkdir()
    start_run_dir(experiment, output, layout, fresh=True)
    assert not (output / "shards").exists() and (output / EXPERIMENT_CONFIG_FILE).is_file()
    (output / "mine.txt").write_text("mine")
    with pytest.raises(ClusterError, match=r"not deleted: it holds files genint did not write \(mine.txt\)"):
        start_run_dir(experiment, output, layout, fresh=True)
    assert (output / "mine.txt").exists()


def test_mean_and_sample_std_over_seeds():
    assert mean_and_std([1.0, 2.0, 3.0]) == (2.0, 1.0)  # sample std (n - 1), not population
    assert mean_and_std([4.0]) == (4.0, 0.0)
    assert plus_minus(10.0, 1.41421) == "10.00 ± 1.41"


def test_tables_for_markdown_and_the_console():
    assert markdown_table(["arm", "%"], [["a", "1.00"], ["b", "2.00"]]) == ["| arm | % |", "|---|---|", "| a | 1.00 |", "| b | 2.00 |"]
    table = rich_table("title", ["arm", "%"], [["a", "1.00"]])
    assert table.title == "title" and [column.header for column in table.columns] == ["arm", "%"] and table.row_count == 1


class Report(BaseModel):
    name: str
    values: list[float]


def test_report_is_written_whole_as_markdown_and_json(tmp_path):
    write_report("# title\n", Report(name="r", values=[1.5]), tmp_path)
    assert (tmp_path / REPORT_MD).read_text() == "# title\n"
    assert json.loads((tmp_path / REPORT_JSON).read_text()) == {"name": "r", "values": [1.5]}
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([REPORT_MD, REPORT_JSON])  # no temporary left


def test_samples_grid_shows_each_streams_first_images_of_every_class_in_columns(tmp_path):
    labels = torch.arange(30) % 3
    images = torch.zeros(30, 3, 8, 8)
    images[labels == 1] = 1.0  # class 1 white, the others black
    samples_grid({"a": (images, labels), "b": (images, labels)}, tmp_path / "grid.png", classes=3, rows_per_class=2)
    with Image.open(tmp_path / "grid.png") as grid:
        # per block: 3 columns and 2 rows of 8 px images with 2 px padding, doubled, plus a 14 px title
        block_height = 2 * (2 * (8 + 2) + 2) + 14
        assert grid.size == (2 * (3 * (8 + 2) + 2), 2 * block_height)
        pixels = grid.convert("RGB")
        # the first image of column 1 (class 1) is white, of column 0 (class 0) black
        assert pixels.getpixel((2 * (2 + 10 + 4), 14 + 2 * (2 + 4))) == (255, 255, 255)
        assert pixels.getpixel((2 * (2 + 4), 14 + 2 * (2 + 4))) == (0, 0, 0)


def test_new_and_matching_readings_against_each_classs_training_values():
    class_values = [np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[0.0, 1.0]])]
    readings = np.array([[0.05, 0.0], [0.0, 0.9], [0.5, 0.5], [0.9, 0.95], [0.0, 0.5]])
    labels = np.array([0, 0, 1, 0, 1])
    new, matching = new_and_matching(readings, labels, class_values, tolerance=0.15)
    # (0.5, 0.5) is 0.5 from every value; (0, 0.5) is 0.5 from class 0's (0, 0) and class 1's (0, 1): a tie matches.
    assert new.tolist() == [False, False, True, False, True]
    assert matching.tolist() == [True, False, True, True, True]


@dataclass(frozen=True)
class FirstPixel:
    """A toy nuisance: the colour of the top-left pixel; class c trains on grey level c / 2."""

    name: str = "first pixel"
    tolerance: float = 0.1

    def read(self, images):
        return images[:, :, 0, 0]

    def training_values(self):
        return [np.full((1, 3), level) for level in (0.0, 0.5, 1.0)]


def test_stream_fidelity_checks_its_goal_and_a_stream_without_one_has_none():
    images = np.zeros((4, 3, 2, 2))
    images[:, :, 0, 0] = np.array([0.0, 0.5, 1.0, 0.25])[:, None]
    labels = np.array([0, 1, 1, 2])
    goal = FidelityGoal(max_new_share=0.05, min_class_match=0.9)
    fidelity = stream_fidelity("observational", images, labels, FirstPixel(), goal)
    assert (fidelity.images, fidelity.new_share, fidelity.class_match) == (4, 0.25, 0.5)
    assert fidelity.goal == "<= 5 % new, >= 90 % class match" and fidelity.goal_met is False
    assert FidelityGoal(min_new_share=0.25).met(0.25, 0.0) and not FidelityGoal(min_new_share=0.26).met(0.25, 1.0)
    plain = stream_fidelity("original", images[:3], np.array([0, 1, 2]), FirstPixel(), None)
    assert (plain.new_share, plain.class_match, plain.goal, plain.goal_met) == (0.0, 1.0, "", None)
    assert fidelity_rows([fidelity, plain]) == [["observational", "4", "25.0 %", "50.0 %", "<= 5 % new, >= 90 % class match", "NO"],
                                                ["original", "3", "0.0 %", "100.0 %", "-", "-"]]
