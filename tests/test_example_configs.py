"""Every config in configs/ validates (data paths pointed at a temporary directory)."""

from pathlib import Path

import pytest
import yaml

from cluster.config import load_config

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[path.name for path in CONFIGS])
def test_example_config_validates(path: Path, tmp_path: Path):
    streams = (yaml.safe_load(path.read_text()).get("shards") or {}).get("prepare") or {}
    overrides = [f"shards.prepare.{stream}.source={tmp_path}" for stream in streams]
    config = load_config(path, overrides)
    assert config.train.active_streams
