"""Job configs: validated before anything starts, one-line errors naming the YAML path, exit 2."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cluster.cli import main
from cluster.config import (
    CONFIG_HASH_FILE,
    RESOLVED_CONFIG_FILE,
    config_hash,
    load_config,
    save_resolved,
)
from cluster.errors import ConfigError

VALID = {
    "name": "tiny",
    "output_dir": "out",
    "train": {"model": "resnet18", "streams": {"original": {"batch_size": 8}, "interventional": {"batch_size": 4, "loss_weight": 0.2}}},
}


def _write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"train": {"modle": "resnet18"}}, "job.yaml: train.modle is not a known key (allowed: model, num_classes, pretrained, streams,"),
        ({"train": {"model": 18}}, "job.yaml: train.model must be one of 'resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152', 'small_cnn' or 'grid_cnn' (got 18)"),
        ({"train": {"streams": {"interventional": {"batch_size": -64}}}}, "job.yaml: train.streams.interventional.batch_size must be >= 0 (got -64)"),
        ({"train": {"streams": {"original": {"batch_size": "many"}}}}, "job.yaml: train.streams.original.batch_size must be a valid integer, unable to parse string as an integer (got 'many')"),
        ({"shards": {"prepare": {"original": {"source": "no/such/dir"}}}}, "job.yaml: shards.prepare.original.source must be an existing directory (got 'no/such/dir')"),
        ({"train": {"streams": {"original": {"batch_size": 0}, "interventional": {"batch_size": 0}}}}, "job.yaml: train.streams needs at least one stream with batch_size > 0"),
    ],
)
def test_bad_config_gives_one_line_naming_the_path(tmp_path, capsys, change, expected):
    config = yaml.safe_load(yaml.safe_dump(VALID))
    for section, values in change.items():
        target = config.setdefault(section, {})
        if section == "train" and "streams" in values:
            for stream, fields in values["streams"].items():
                target["streams"].setdefault(stream, {}).update(fields)
        else:
            target.update(values)
    assert main(["config", "check", str(_write(tmp_path, config))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("genint: error: ") and expected in err[0]


def test_missing_config_file(tmp_path, capsys):
    assert main(["config", "check", str(tmp_path / "absent.yaml")]) == 2
    assert capsys.readouterr().err.strip() == f"genint: error: {tmp_path / 'absent.yaml'}: config file not found"


def test_invalid_yaml_names_the_line(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text("name: tiny\noutput_dir: [unclosed\n")
    assert main(["config", "check", str(path)]) == 2
    assert f"{path}:3: invalid YAML" in capsys.readouterr().err


def test_set_overrides_are_typed_and_validated(tmp_path):
    path = _write(tmp_path, VALID)
    config = load_config(path, ["train.streams.interventional.batch_size=32", "train.streams.transferred.batch_size=16"])
    assert config.train.streams["interventional"].batch_size == 32
    assert config.train.streams["transferred"].batch_size == 16
    with pytest.raises(ConfigError, match=r"train.streams.original.batch_size must be >= 0 \(got -1\)"):
        load_config(path, ["train.streams.original.batch_size=-1"])
    with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE"):
        load_config(path, ["train.model"])
    with pytest.raises(ConfigError, match="train.model is a value, not a section"):
        load_config(path, ["train.model.depth=3"])


def test_resolved_config_and_hash_are_saved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(_write(tmp_path, VALID))
    digest = save_resolved(config)
    saved = (tmp_path / "out" / RESOLVED_CONFIG_FILE).read_text()
    assert saved.startswith(f"# sha256: {digest}\n")
    assert yaml.safe_load(saved)["train"]["streams"]["interventional"]["loss_weight"] == 0.2
    assert (tmp_path / "out" / CONFIG_HASH_FILE).read_text().strip() == digest
    assert config_hash(load_config(_write(tmp_path, VALID), ["train.model=resnet50"])) != digest


def test_analysis_sections_leave_the_job_hash_as_it_was(tmp_path, monkeypatch):
    # Configuring genint strategy or genint analyse must not make a finished job look changed.
    monkeypatch.chdir(tmp_path)
    digest = config_hash(load_config(_write(tmp_path, VALID)))
    analysed = {**VALID, "strategy_search": {"real_stream": "original", "feature_extractor": {"arch": "small_cnn", "weights": "w.pt"}},
                "correlation": {"streams": ["original"]}}
    assert config_hash(load_config(_write(tmp_path, analysed))) == digest


def test_shipped_configs_are_valid(monkeypatch, tmp_path):
    for path in sorted(Path("configs").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        for prepare in raw.get("shards", {}).get("prepare", {}).values():
            (tmp_path / prepare["source"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, tmp_path / path.name)
        monkeypatch.chdir(tmp_path)
        load_config(tmp_path / path.name)
        monkeypatch.undo()


def test_console_script_exits_2_with_one_line(tmp_path):
    path = _write(tmp_path, {**VALID, "extra": 1})
    genint = Path(sys.executable).parent / "genint"  # the console script installed with the package
    result = subprocess.run([str(genint), "config", "check", str(path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"genint: error: {path}: extra is not a known key (allowed: name, output_dir, shards, datagen, train, metrics, strategy_search, correlation, explain)"]
