"""A whole job on a bucket (the session's SeaweedFS on 127.0.0.1): ``shards.root: s3://...`` is
prepared, generated into and trained from, through the manifest segments, then evaluated."""

import pytest
import torch

from cluster.run import run_job
from shards.storage import S3Store, S3Url
from shards.stores import open_manifest
from tests.job_helpers import CLASSES, IMAGES_PER_SEED, assert_store_exact, job_assets, tiny_job
from trainers.evaluation.config import EvalConfig
from trainers.evaluation.suites import evaluate
from trainers.models import build_model


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return job_assets(tmp_path_factory.mktemp("assets"))


def test_a_job_on_a_bucket_prepares_generates_trains_and_evaluates_there(seaweedfs, assets, tmp_path):
    root = f"s3://{seaweedfs.new_bucket()}/store"
    # Every step waits for 4 interventional samples: the trainer follows the segments as datagen commits them.
    config = tiny_job(assets, tmp_path / "out", "on-a-bucket", seeds_per_class=1,
                      interventional={"batch_size": 4, "when_short": "wait"},
                      train={"max_steps": 3, "checkpoint_every_steps": 100}, shards_root=root)
    result = run_job(config)

    assert result.train.steps == 3 and result.trained_samples["interventional"] == 3 * 4
    assert not (tmp_path / "out" / "shards").exists()  # nothing of the store went to the output directory
    planned = CLASSES * 1 * IMAGES_PER_SEED
    keys = assert_store_exact(S3Url.parse(root), planned=planned)
    assert len(keys) == planned
    objects = [key for key, _ in S3Store(S3Url.parse(root)).list("")]
    assert any(key.startswith("interventional/manifest/g0/") for key in objects)
    assert "original/prepare.json" in objects and "interventional/datagen-plan.json" in objects
    assert sum(record.samples for record in open_manifest(f"{root}/original").shards()) == 1797

    model = build_model(config.train.model, CLASSES)
    scored = evaluate(model, "shards", f"{root}/interventional",
                      EvalConfig(loader=config.train.data, batch_size=16), torch.device("cpu"))
    assert scored.samples == planned
