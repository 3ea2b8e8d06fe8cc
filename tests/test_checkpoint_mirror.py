"""Checkpoints mirrored to a bucket (the session's SeaweedFS): a restore follows the bucket's newest
step, so a scratch directory left from another run of the job never decides where training resumes."""

from shards.storage import S3Store, S3Url
from tests.checkpoint_helpers import copy_checkpoint, training  # noqa: F401  (the fixture)
from trainers import checkpoint


def _steps(directory) -> list[str]:
    return sorted(path.name for path in directory.glob("step_*"))


def test_a_local_step_the_bucket_does_not_hold_is_replaced_by_the_buckets_newest(seaweedfs, training, tmp_path):
    mirror = S3Url.parse(f"s3://{seaweedfs.new_bucket()}/checkpoints")
    directory = tmp_path / "checkpoints"
    for step in (1, 2):
        training.steps(step, 1)
        checkpoint.save(training.engine, directory, step, training.sources, keep=2, mirror=mirror)
    after_two = training.steps(3, 1)
    checkpoint.save(training.engine, directory, 3, training.sources, keep=3)  # saved here, never committed to the bucket
    assert S3Store(mirror).get("latest", "latest", 100) == b"step_000000002"

    assert checkpoint.restore(training.engine, directory, training.sources, mirror) == 2
    assert _steps(directory) == ["step_000000002"] and (directory / "latest").read_text() == "step_000000002"
    assert training.steps(3, 1) == after_two  # the bucket's step 2 resumed exactly


def test_local_checkpoints_beside_an_empty_bucket_are_removed_and_training_starts_at_zero(seaweedfs, training, tmp_path):
    mirror = S3Url.parse(f"s3://{seaweedfs.new_bucket()}/checkpoints")
    directory = copy_checkpoint(tmp_path / "checkpoints")  # steps 1 and 2, as a bucket made again finds its old scratch
    (directory / "notes.txt").write_text("not genint's")

    assert checkpoint.restore(training.engine, directory, training.sources, mirror) == 0
    assert _steps(directory) == [] and not (directory / "latest").exists()
    assert (directory / "notes.txt").read_text() == "not genint's"
