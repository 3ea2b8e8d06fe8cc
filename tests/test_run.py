"""`genint run` on a tiny config: prepares, verifies and summarizes; a rerun resumes."""

import yaml

from cluster.cli import main
from cluster.config import CONFIG_HASH_FILE
from cluster.examples import write_digits_imagefolder
from shards.manifest import Manifest


def test_run_prepares_verifies_and_is_idempotent(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert write_digits_imagefolder(tmp_path / "digits", image_size=16) == 1797
    config = {
        "name": "tiny",
        "output_dir": "out",
        "shards": {"max_samples_per_shard": 300, "prepare": {"original": {"source": "digits", "unit_size": 500}}},
        "datagen": {"actors": 0},
        "train": {"model": "resnet18", "num_classes": 10, "max_steps": 2, "data": {"crop_size": 16, "resize_size": 16},
                  "streams": {"original": {"batch_size": 8}}},
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(config))

    assert main(["run", "job.yaml"]) == 0
    output = capsys.readouterr().out
    assert "original" in output and "1797" in output
    digest = (tmp_path / "out" / CONFIG_HASH_FILE).read_text().strip()
    records = Manifest(tmp_path / "out" / "shards" / "original").shards()
    assert sum(record.samples for record in records) == 1797
    assert {record.config_hash for record in records} == {digest}

    assert main(["run", "job.yaml"]) == 0  # everything is already committed: nothing is rewritten
    assert Manifest(tmp_path / "out" / "shards" / "original").shards() == records

    assert main(["shards", "inspect", "out/shards"]) == 0
    inspected = capsys.readouterr().out
    assert "provenance of original" in inspected and "class_name" in inspected


def test_inspect_of_a_directory_without_manifest_fails_in_one_line(tmp_path, capsys):
    assert main(["shards", "inspect", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == f"genint: error: {tmp_path}: no manifest.jsonl here or in its subdirectories"
