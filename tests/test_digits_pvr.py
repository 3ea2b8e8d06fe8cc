"""The digits pointer-value benchmark (seed 003), shortened, through `genint experiment`: the grid streams
carry their digits into IIT's batches through DALI, and the report holds behavioural accuracy and IIA on the
training, validation and test streams beside the seed's Table 1; `genint eval --suite iia` on the test
stream gives the report's numbers."""

import json
from pathlib import Path

import pytest

from cluster.cli import main
from experiments.harness.report import REPORT_JSON, REPORT_MD
from shards.images import read_stream_samples
from tests.experiment_helpers import set_flags
from trainers.checkpoint_files import MODEL_STATES_NAME, checked_tag_dir
from trainers.torch_files import load_plain

CONFIG = Path(__file__).parent.parent / "configs" / "experiments" / "digits-pvr.yaml"
SHORT = [
    "seeds=[0]", "arms=[iit_multitask]", "data.train=256", "data.validation=64", "data.test=64", "iia_triples=128",
    "batch_size=32", "train.max_steps=20", "train.checkpoint_every_steps=20", "train.report_every_steps=10",
]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_short_benchmark_trains_iit_on_shard_digits_and_reports_iia(tmp_path):
    output = tmp_path / "run"
    settings = set_flags(output, SHORT)
    assert main(["experiment", str(CONFIG), *settings]) == 0
    samples = read_stream_samples(output / "shards" / "original", 32)
    assert len(samples.labels) == 256 and set(samples.provenance[0]["causal_variables"]) == {"top_left", "top_right", "bottom_left", "bottom_right"}
    report = json.loads((output / REPORT_JSON).read_text())
    (arm,) = report["arms"]
    assert arm["arm"] == "iit_multitask" and arm["paper"] == [99.60, 96.01, 99.10, 96.64]
    assert len(arm["means"]) == 6 and all(0 <= value <= 100 for value in arm["means"].values())
    # the IIT + multi-task job trained all its steps: each of its batches carried the grids' digits (the objective refuses
    # a batch without); its checkpoint holds the heads, which the evaluated classifier leaves out
    result = json.loads((output / "arms" / "iit_multitask" / "seed0" / "result.json").read_text())
    assert result["steps"] == 20 and 0 < result["final_loss"] < 20
    weights = load_plain(checked_tag_dir(Path(result["checkpoint"])) / MODEL_STATES_NAME, "checkpoint")["module"]
    assert {key for key in weights if key.startswith("objective_heads.")} == {
        f"objective_heads.heads.{site}.{part}" for site in range(4) for part in ("weight", "bias")}
    assert "Table 1" in (output / REPORT_MD).read_text() and "goal not checked" in report["verdict"]
    # rerun: every arm is reused (nothing trains again), the report is the same
    assert main(["experiment", str(CONFIG), *settings]) == 0
    assert json.loads((output / REPORT_JSON).read_text())["arms"] == report["arms"]

    # genint eval --suite iia with the arm's resolved job config: the same seeded triples give the report's test figures
    arm_dir = output / "arms" / "iit_multitask" / "seed0"
    evaluated = tmp_path / "iia.json"
    command = ["eval", result["checkpoint"], "--suite", "iia", "--data", str(output / "shards" / "test"), "--device", "cpu",
               "--triples", "128", "--json", str(evaluated)]
    assert main([*command, "--config", str(arm_dir / "config.yaml")]) == 0
    measured = json.loads(evaluated.read_text())
    assert measured["samples"] == 64 and measured["triples"] == 128 and measured["alignment_module"] == "features.1"
    assert 100 * measured["behavioural_top1"] == pytest.approx(arm["means"]["behaviour_test"])
    assert 100 * measured["iia"] == pytest.approx(arm["means"]["iia_test"])
    assert main(command) == 2  # no --config: one line, nothing written
