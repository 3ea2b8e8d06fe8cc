"""The correlation analysis (cluster/correlation.py, the paper's Fig. 3) on constructed streams
written through the real shard writer, where we know whether the nuisance predicts the label.

Every image is a background colour with a class mark (a white square whose place is the class).
Two nuisances set the background: nuisance 0 the red channel, nuisance 1 the green one. The
regressor stream is "interventional": each sample records one nuisance as its intervention
(component, offset), both drawn independently of the class. "confounded" is like real training
data: nuisance 0 follows the class. "unconfounded" draws both nuisances independently of the class.
"""

import io
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from cluster.cli import main
from cluster.correlation import correlation_analysis
from cluster.correlation_config import CorrelationConfig
from cluster.errors import ClusterError, ConfigError
from cluster.nuisance_regressor import intervention_targets
from shards.errors import ShardError
from shards.images import read_stream_samples
from shards.writer import ShardWriter
from tests.bad_input_helpers import BadInput, check_bad_input, table
from tests.conftest import write_stream
from tests.store_helpers import FIRST_SHARD, overwrite_member

CLASSES = 4
SIZE_PX = 16
# Nuisance 0 of class c in the confounded stream: well apart, so a perfect regressor separates them.
CONFOUNDED_LEVELS = (-0.75, -0.25, 0.25, 0.75)
FAST = {"image_size": SIZE_PX, "regressor": {"epochs": 12, "batch_size": 32, "lr": 3e-3},
        "classifier": {"hidden_layers": [64, 64], "max_epochs": 300}}


def _image(label: int, nuisances: tuple[float, float]) -> bytes:
    pixels = np.zeros((SIZE_PX, SIZE_PX, 3), np.uint8)
    pixels[..., 0] = round(255 * (0.5 + 0.4 * nuisances[0]))
    pixels[..., 1] = round(255 * (0.5 + 0.4 * nuisances[1]))
    pixels[..., 2] = 128
    pixels[2:6, 2 + 3 * label: 5 + 3 * label] = 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_stream(store: Path, stream: str, count: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with ShardWriter(store / stream, stream, "w0", "testhash", max_samples=128) as writer:
        for index in range(count):
            label = int(rng.integers(CLASSES))
            nuisances = rng.uniform(-1, 1, size=2)
            record = {"stream": stream, "class": label}
            if stream == "confounded":
                nuisances[0] = CONFOUNDED_LEVELS[label] + rng.normal(0, 0.05)
            if stream == "interventional":
                component = index % 2
                record |= {"components": [component], "offsets": [float(nuisances[component])]}
            writer.write({"__key__": f"s{index:05d}", "png": _image(label, tuple(nuisances)), "cls": label, "json": record})


def _store(root: Path, counts: dict[str, int]) -> Path:
    store = root / "shards"
    for seed, (stream, count) in enumerate(counts.items()):
        _write_stream(store, stream, count, seed)
    return store


def test_the_confounded_stream_is_well_above_chance_and_the_others_near_it(tmp_path):
    store = _store(tmp_path, {"interventional": 800, "confounded": 600, "unconfounded": 600})
    config = CorrelationConfig(regressor_stream="interventional", streams=["confounded", "unconfounded", "interventional"], **FAST)
    result = correlation_analysis(store, config)
    multiples = {entry.stream: entry.held_out.multiple_of_chance for entry in result.streams}
    assert result.regressor.held_out_l1 < 0.5 * result.regressor.constant_l1, result.regressor
    assert multiples["confounded"] > 3.0, multiples
    assert multiples["unconfounded"] < 1.5, multiples
    assert multiples["interventional"] < 1.5, multiples
    confounded = result.streams[0]
    # Scored on the held-out share only: a fifth of the stream, every class in it.
    assert (confounded.held_out.samples, confounded.fit_samples, confounded.held_out.classes) == (120, 480, CLASSES)
    assert confounded.held_out.chance == 1 / CLASSES


def test_an_evaluation_stream_scores_each_streams_classifier_on_its_held_out_share(tmp_path):
    store = _store(tmp_path, {"interventional": 600, "confounded": 400, "unconfounded": 600})
    config = CorrelationConfig(streams=["confounded", "unconfounded"], evaluation_stream="unconfounded", **FAST)
    result = correlation_analysis(store, config)
    confounded, unconfounded = result.streams
    # The same MLP on the same held-out rows: the same number twice.
    assert unconfounded.on_evaluation_stream == unconfounded.held_out
    assert unconfounded.on_evaluation_stream.samples == 120
    # What the confounded stream ties to the label is not tied to it in the evaluation stream.
    assert confounded.held_out.multiple_of_chance > 3.0
    assert confounded.on_evaluation_stream.multiple_of_chance < 1.5


def test_genint_analyse_correlation_prints_the_table_and_writes_the_json(tmp_path, monkeypatch, capsys):
    _store(tmp_path, {"interventional": 300, "confounded": 200})
    fast = FAST | {"regressor": {"epochs": 2}, "classifier": {"hidden_layers": [16], "max_epochs": 50}}
    job = {"name": "job", "output_dir": str(tmp_path), "correlation": {"streams": ["confounded"], **fast}}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    monkeypatch.chdir(tmp_path)
    assert main(["analyse", "correlation", "job.yaml", "--set", "correlation.output=results/corr.json"]) == 0
    out = capsys.readouterr().out
    assert "confounded" in out and "x chance" in out
    written = json.loads((tmp_path / "results" / "corr.json").read_text())
    assert list(written["streams"]) == ["confounded"]
    assert written["streams"]["confounded"]["held_out"]["samples"] == 40
    assert written["regressor"] | {"train_l1": 0, "held_out_l1": 0, "constant_l1": 0} == {
        "stream": "interventional", "model": "nuisance_cnn", "components": 2, "train_samples": 240,
        "held_out_samples": 60, "train_l1": 0, "held_out_l1": 0, "constant_l1": 0}


def test_a_regressor_stream_without_offsets_is_refused_before_training(tmp_path):
    store = _store(tmp_path, {"confounded": 40})
    with pytest.raises(ConfigError, match="correlation.regressor_stream: stream 'confounded' records no intervention offsets"):
        correlation_analysis(store, CorrelationConfig(regressor_stream="confounded", streams=["confounded"]))


# -- what the analysis reads: shards.images.read_stream_samples ----------------------------------


def test_read_stream_samples_gives_each_samples_key_and_provenance_in_commit_order(stream_dir):
    written = write_stream(stream_dir, 7, max_samples=3)
    stream = read_stream_samples(stream_dir, image_size=8)
    assert stream.keys == [sample["__key__"] for sample in written]
    assert stream.provenance == [sample["json"] for sample in written]
    assert stream.labels.tolist() == [sample["cls"] for sample in written] and stream.images.shape == (7, 3, 8, 8)


def test_read_stream_samples_names_the_sample_whose_json_is_not_an_object(stream_dir):
    write_stream(stream_dir, 3, max_samples=3)
    overwrite_member(stream_dir, FIRST_SHARD, 1, "json", lambda size: b"[" + b" " * (size - 2) + b"]")
    with pytest.raises(ShardError, match=rf"^{FIRST_SHARD}: sample sample00001: json field must be a JSON object \(got list\)"):
        read_stream_samples(stream_dir, image_size=8)


# -- the regressor's targets ---------------------------------------------------------------------


def test_targets_hold_each_samples_recorded_offsets_and_nothing_else():
    records = [{"components": [1], "offsets": [-2.5]}, {"class": 3}, {"components": [0], "offsets": [4]}]
    targets = intervention_targets(records, ["a", "b", "c"], "interventional")
    assert targets.offsets.tolist() == [[0, -2.5], [0, 0], [4, 0]]
    assert targets.recorded.tolist() == [[False, True], [False, False], [True, False]]


@pytest.mark.parametrize("record, problem", [
    ({"components": [0], "offsets": ["big"]}, "an offset must be a finite number"),
    ({"components": [0.5], "offsets": [1.0]}, "a component must be a whole number"),
    ({"components": [0, 1], "offsets": [1.0]}, "components and offsets must be lists of one length"),
])
def test_a_malformed_provenance_record_is_named(record, problem):
    with pytest.raises(ClusterError, match=f"stream interventional: sample k1: {problem}"):
        intervention_targets([{"components": [0], "offsets": [1.0]}, record], ["k0", "k1"], "interventional")


def _job_with_store(**correlation):
    def setup(root: Path) -> None:
        _store(root, {"interventional": 20, "confounded": 20})
        job = {"name": "job", "output_dir": "out", "shards": {"root": "shards"}} | ({"correlation": correlation} if correlation else {})
        (root / "job.yaml").write_text(yaml.safe_dump(job))
    return setup


CASES = [
    BadInput("unknown-stream", ["analyse", "correlation", "job.yaml"], 2,
             "correlation.streams[1]: stream 'original' is not in the store shards (streams there: confounded, interventional)",
             _job_with_store(streams=["confounded", "original"])),
    BadInput("regressor-stream-without-offsets", ["analyse", "correlation", "job.yaml"], 2,
             "correlation.regressor_stream: stream 'confounded' records no intervention offsets",
             _job_with_store(regressor_stream="confounded", streams=["confounded"])),
    BadInput("repeated-stream", ["analyse", "correlation", "job.yaml"], 2,
             "correlation.streams must not repeat a stream", _job_with_store(streams=["confounded", "confounded"])),
    BadInput("output-is-a-directory", ["analyse", "correlation", "job.yaml", "--set", "correlation.output=shards"], 2,
             "correlation.output shards: is a directory", _job_with_store(streams=["confounded"])),
    BadInput("no-section-means-the-defaults", ["analyse", "correlation", "job.yaml"], 2,
             "correlation.streams[0]: stream 'original' is not in the store", _job_with_store()),
    BadInput("no-store", ["analyse", "correlation", "job.yaml", "--set", "shards.root=absent"], 2,
             "correlation: the store absent holds no streams", _job_with_store()),
]


@table(CASES)
def test_bad_correlation_config_is_one_line(case, tmp_path, monkeypatch, capsys):
    check_bad_input(case, tmp_path, monkeypatch, capsys)
