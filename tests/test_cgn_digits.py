"""A CGN digits benchmark (coloured), shortened, through `genint experiment`: the counterfactual stream
mixes texture and background classes as configured, and the CGN arm beats the original arm on the test."""

import json
from pathlib import Path

import pytest

from cluster.cli import main
from experiments.harness.report import REPORT_JSON, REPORT_MD
from shards.images import read_stream_samples
from tests.experiment_helpers import set_flags

CONFIG = Path(__file__).parent.parent / "configs" / "experiments" / "cgn-coloured-digits.yaml"
SHORT = [
    "seeds=[0]", "arms=[original,counterfactual]", "cgn.epochs=12", "cgn.threads=1",
    "observational.seeds_per_class=10", "counterfactual.seeds_per_class=10", "counterfactual.counterfactuals_per_shape=10",
    "train.max_steps=120", "train.checkpoint_every_steps=120", "train.report_every_steps=40",
]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_short_coloured_benchmark_mixes_classes_and_the_cgn_arm_beats_the_original(tmp_path):
    output = tmp_path / "run"
    settings = set_flags(output, SHORT)
    assert main(["experiment", str(CONFIG), *settings]) == 0
    report = json.loads((output / REPORT_JSON).read_text())
    samples = read_stream_samples(output / "shards" / "counterfactual", 32)
    assert len(samples.labels) == 10 * 10 * 10
    classes = [record["mechanism_classes"] for record in samples.provenance]
    assert all(record["shape"] == label for record, label in zip(classes, samples.labels))
    # Texture and background classes are drawn uniformly over 10 classes: about 90 % differ from the shape's.
    assert 0.8 < report["counterfactual_mixing"]["texture"] < 0.97 and 0.8 < report["counterfactual_mixing"]["background"] < 0.97
    arms = {arm["arm"]: arm for arm in report["arms"]}
    assert arms["counterfactual"]["test_mean"] > arms["original"]["test_mean"], arms
    assert 0 <= report["mask_quality"]["share_in_band"] <= 1 and (output / "samples.png").is_file()
    assert "seed 001 reproduction" in (output / REPORT_MD).read_text()
