"""`genint train` then `genint eval` on a tiny job: Ray Train + DeepSpeed on CPU over DALI-read shards."""

import json

import pytest
import yaml

from cluster.cli import main
from cluster.examples import write_digits_imagefolder

pytestmark = pytest.mark.slow


def test_train_then_eval_from_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_digits_imagefolder(tmp_path / "digits", image_size=16)
    config = {
        "name": "tiny-train",
        "output_dir": "out",
        "shards": {"max_samples_per_shard": 400, "prepare": {"original": {"source": "digits", "unit_size": 900}}},
        "train": {
            "model": "resnet18", "num_classes": 10, "max_steps": 4, "checkpoint_every_steps": 2, "report_every_steps": 1,
            "data": {"crop_size": 16, "resize_size": 16}, "streams": {"original": {"batch_size": 16}},
        },
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "job.yaml"]) == 1  # nothing prepared yet: one line, before Ray starts
    assert "train.streams.original: no committed shards" in capsys.readouterr().err

    assert main(["prepare", "digits", "out/shards", "--stream", "original"]) == 0
    assert main(["train", "job.yaml"]) == 0
    output = capsys.readouterr().out
    assert "train: 4 steps" in output and "step_000000004" in output

    checkpoint = tmp_path / "out" / "train" / "checkpoints"
    latest = sorted(path for path in checkpoint.iterdir() if path.is_dir())[-1]
    assert main(["eval", str(latest), "--suite", "shards", "--data", "out/shards/original", "--config", "job.yaml",
                 "--json", "eval.json"]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["samples"] == 1797 and 0.0 <= result["top1"] <= result["top5"] <= 1.0
