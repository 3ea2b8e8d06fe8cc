"""`genint directions` and `genint datagen` from a config, on an embedded local Ray; bad input exits in one line."""

from pathlib import Path

import pytest
import yaml

from cluster.cli import main
from datagen.directions import load_directions
from shards.reader import committed_shards
from tests.datagen_helpers import save_tiny_biggan

pytestmark = pytest.mark.slow


def _write_config(tmp_path: Path, weights: Path, **datagen) -> Path:
    config = {
        "name": "tiny-datagen",
        "output_dir": "out",
        "shards": {"max_samples_per_shard": 5},
        "datagen": {
            "actors": 1, "device": "cpu", "generator": {"weights": str(weights)}, "classes": [0, 1],
            "directions": {"samples": 64, "components": 4, "batch_size": 32, "regression_samples": 64},
            "strategy": {"preset": "weak", "top_k": 4, "components_per_seed": 2, "offsets_per_component": 2, "seeds_per_class": 2},
            "seeds_per_unit": 1, "batch_size": 8, **datagen,
        },
        "train": {"model": "resnet18", "streams": {"original": {"batch_size": 8}}},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_directions_then_datagen_write_the_planned_samples(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    weights, _ = save_tiny_biggan(tmp_path / "biggan")
    config = _write_config(tmp_path, weights)
    assert main(["directions", str(config)]) == 0
    assert load_directions(tmp_path / "out" / "directions.npz", latent_dim=16).lat_comp.shape == (4, 16)
    assert main(["datagen", str(config)]) == 0
    assert "datagen: 16 images" in capsys.readouterr().out  # 2 classes x 2 seeds x 2 components x 2 offsets
    assert sum(record.samples for _, record in committed_shards(tmp_path / "out" / "shards" / "interventional")) == 16
    assert main(["shards", "verify", "out/shards"]) == 0


@pytest.mark.parametrize(
    "override, message",
    [
        ("datagen.actors=0", "datagen.actors must be >= 1"),
        ("datagen.strategy=bogus", "datagen.strategy.preset must be one of"),
        ("datagen.generator.weights=/nowhere", "/nowhere: not a directory and not a model name"),
    ],
)
def test_bad_input_exits_with_one_line_and_writes_no_shards(tmp_path, monkeypatch, capsys, override, message):
    monkeypatch.chdir(tmp_path)
    weights, directions = save_tiny_biggan(tmp_path / "biggan")
    config = _write_config(tmp_path, weights, directions={"path": str(directions)})
    assert main(["datagen", str(config), "--set", override]) in (1, 2)
    error = capsys.readouterr().err.strip()
    assert error.startswith("genint: error:") and message in error and "\n" not in error
    assert not (tmp_path / "out" / "shards").exists()


def test_cvae_is_trained_steered_and_sampled_through_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    from cluster.examples import write_digits_imagefolder

    write_digits_imagefolder(tmp_path / "digits", image_size=16)
    config = {
        "name": "tiny-cvae",
        "output_dir": "out",
        "shards": {"max_samples_per_shard": 500, "prepare": {"original": {"source": "digits", "unit_size": 900}}},
        "datagen": {
            "actors": 1, "device": "cpu", "classes": [3, 7],
            "generator": {"kind": "cvae", "train": {"epochs": 2, "model": {"image_size": 16, "hidden_dim": 64}}},
            "directions": {"samples": 400, "components": 2, "batch_size": 200, "regression_samples": 400},
            "strategy": {"kind": "intervention", "truncation": 1.0, "top_k": 2, "components_per_seed": 2, "seeds_per_class": 5},
            "seeds_per_unit": 5, "image_format": "png",
        },
        "train": {"model": "resnet18", "streams": {"original": {"batch_size": 8}}},
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(config))
    assert main(["prepare", "digits", "out/shards", "--stream", "original"]) == 0  # the stream the CVAE learns from
    assert main(["generator", "train", "job.yaml"]) == 0
    assert (tmp_path / "out" / "generator" / "config.json").exists()
    assert main(["directions", "job.yaml"]) == 0
    assert main(["datagen", "job.yaml"]) == 0
    records = [record for _, record in committed_shards(tmp_path / "out" / "shards" / "interventional")]
    assert sum(record.samples for record in records) == 20 and set(records[0].class_counts) == {3, 7}
