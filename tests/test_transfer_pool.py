"""Transfer actors on a local Ray: every content sample transferred once, with its label, from the style pool."""

import json
from pathlib import Path

import pytest
import torch
from torchvision.models import vgg19

from cluster.generation import run_pool
from datagen.service import plan_generation, start_pool, start_transfer_pool
from datagen.transfer_stage import TransferStageConfig
from shards.reader import committed_shards, iter_samples
from shards.verify import verify_store
from tests.conftest import write_stream
from tests.datagen_helpers import save_tiny_biggan, tiny_datagen_config, tiny_store

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("local_ray")]


def _samples(stream_dir: Path) -> list[dict]:
    return list(iter_samples([path for path, _ in committed_shards(stream_dir)]))


def test_transfer_pool_covers_the_content_stream_exactly_once(tmp_path: Path):
    store = tmp_path / "store"
    content = write_stream(store / "original", 10, max_samples=4)
    weights, directions = save_tiny_biggan(tmp_path / "biggan")
    settings, units = plan_generation(tiny_datagen_config(weights, directions), tmp_path, tiny_store(store, 8))
    run_pool(start_pool(settings, units))
    torch.save(vgg19().features.state_dict(), tmp_path / "vgg.pt")
    stage = TransferStageConfig(
        actors=2, samples_per_unit=3, style_pool_units=2,
        gatys={"vgg_weights": str(tmp_path / "vgg.pt"), "optimise_size": 16, "save_size": 16,
               "min_steps": 1, "max_steps": 2, "batch_size": 2},
    )
    pool = start_transfer_pool(stage, units, tiny_store(store, 4), device="cpu")
    report = pool.run()
    pool.shutdown()
    transferred = _samples(store / "transferred")
    assert report.images == len(transferred) == len(content) == 10
    by_content = {json.loads(sample["json"])["content_key"]: sample for sample in transferred}
    assert sorted(by_content) == sorted(sample["__key__"] for sample in content)
    for written in content:
        assert int(by_content[written["__key__"]]["cls"]) == written["cls"]
    pool_units = {unit.unit_id for unit in units[:2]}
    style_keys = {json.loads(sample["json"])["style_key"] for sample in transferred}
    style_units = {json.loads(s["json"])["unit"] for s in _samples(store / "interventional") if s["__key__"] in style_keys}
    assert style_units <= pool_units
    findings, _ = verify_store(store)
    assert not [finding for finding in findings if finding.is_problem]
