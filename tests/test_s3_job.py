"""A whole job on a bucket (the session's SeaweedFS on 127.0.0.1): ``output_dir: s3://...`` puts
its store there, which is prepared, generated into and trained from (through the manifest
segments), then evaluated; its checkpoints are mirrored there, so a rerun on a machine without its
local files resumes from the bucket."""

import shutil

import pytest
import torch

from cluster.generation import plan_job_generation
from cluster.run import run_job
from datagen.errors import DatagenError
from shards.storage import S3Store, S3Url
from shards.stores import open_manifest
from tests.job_helpers import CLASSES, IMAGES_PER_SEED, assert_store_exact, job_assets, tiny_job
from trainers.evaluation.config import EvalConfig
from trainers.evaluation.suites import evaluate
from trainers.models import build_model


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return job_assets(tmp_path_factory.mktemp("assets"))


def test_a_job_on_a_bucket_prepares_generates_trains_evaluates_and_resumes_there(seaweedfs, assets, tmp_path):
    output = f"s3://{seaweedfs.new_bucket()}/out"
    root = f"{output}/shards"
    # Every step waits for 4 interventional samples: the trainer follows the segments as datagen commits them.
    config = tiny_job(assets, output, "on-a-bucket", seeds_per_class=1,
                      interventional={"batch_size": 4, "when_short": "wait"},
                      train={"max_steps": 3, "checkpoint_every_steps": 2})
    result = run_job(config)

    assert result.train.steps == 3 and result.trained_samples["interventional"] == 3 * 4
    assert not (config.local_output_dir / "shards").exists()  # the store is in the bucket only
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

    # The steps' checkpoints are in the bucket (the newest two, as keep_checkpoints says), and the
    # resolved config beside them. A rerun on a machine without the scratch directory fetches the
    # newest step from the bucket and trains nothing again; generation skips its done units.
    checkpoints = S3Store(config.checkpoint_url)
    assert checkpoints.get("latest", "latest", 100) == b"step_000000003"
    assert {key.split("/")[0] for key, _ in checkpoints.list("step_")} == {"step_000000002", "step_000000003"}
    assert S3Store(S3Url.parse(output)).get("config.sha256", "config hash", 100).decode().strip() == result.config_hash
    shutil.rmtree(config.local_output_dir)  # genint's scratch directory: another machine has none
    again = run_job(config)
    assert [start.step for start in again.status.train.starts] == [3] and again.train.steps == 3
    assert again.generated["interventional"].images == 0
    assert_store_exact(S3Url.parse(root), planned=planned)
    shutil.rmtree(config.local_output_dir)


def test_style_transfer_on_a_bucket_is_refused_in_one_line_before_anything_is_written(seaweedfs, assets, tmp_path):
    root = f"s3://{seaweedfs.new_bucket()}/store"
    config = tiny_job(assets, tmp_path / "out", "transfer-on-a-bucket", seeds_per_class=1, interventional={"batch_size": 4}, train={},
                      datagen={"transfer": {"actors": 1}}, shards_root=root)
    with pytest.raises(DatagenError, match=rf"^datagen.transfer.actors: .* this job's store is {root}; set datagen.transfer.actors to 0"):
        plan_job_generation(config, "hash")
    assert list(S3Store(S3Url.parse(root)).list("")) == []
