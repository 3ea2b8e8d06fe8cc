import subprocess
import sys
import tarfile

import pytest

from shards.errors import SampleError, ShardError
from shards.manifest import Manifest
from shards.writer import ShardWriter
from tests.conftest import make_sample, write_stream


def test_rolls_by_sample_count_and_records_each_shard(stream_dir):
    samples = write_stream(stream_dir, 20, max_samples=7)
    records = Manifest(stream_dir).shards()
    assert [record.samples for record in records] == [7, 7, 6]
    assert [record.name for record in records] == [f"original-w0-00000{seq}.tar" for seq in range(3)]
    first = records[0]
    assert first.bytes == (stream_dir / first.name).stat().st_size
    assert first.class_counts == {0: 3, 1: 2, 2: 2}
    assert sum(sum(record.class_counts.values()) for record in records) == len(samples)
    assert {record.config_hash for record in records} == {"testhash"}


def test_rolls_before_exceeding_max_bytes(stream_dir):
    max_bytes = 4 * 10240  # tar files grow in 10,240-byte records
    with ShardWriter(stream_dir, "original", "w0", "h", max_samples=1000, max_bytes=max_bytes) as writer:
        for index in range(12):
            writer.write(make_sample(index))
    records = Manifest(stream_dir).shards()
    assert len(records) > 1
    assert sum(record.samples for record in records) == 12
    assert all(record.bytes <= max_bytes for record in records)


def test_index_is_byte_identical_to_dali_wds2idx(stream_dir, tmp_path):
    write_stream(stream_dir, 9, max_samples=9)
    tar_path = stream_dir / "original-w0-000000.tar"
    reference = tmp_path / "reference.idx"
    subprocess.run([sys.executable, "-m", "wds2idx", str(tar_path), str(reference)], check=True, capture_output=True)
    assert tar_path.with_suffix(".idx").read_bytes() == reference.read_bytes()


def test_same_samples_give_the_same_shard_bytes(tmp_path):
    write_stream(tmp_path / "a", 10)
    write_stream(tmp_path / "b", 10)
    assert [r.sha256 for r in Manifest(tmp_path / "a").shards()] == [r.sha256 for r in Manifest(tmp_path / "b").shards()]


def test_invalid_sample_writes_nothing(stream_dir):
    with ShardWriter(stream_dir, "original", "w0", "h") as writer:
        writer.write(make_sample(0))
        with pytest.raises(SampleError):
            writer.write({**make_sample(1), "__key__": "bad.key"})
    with tarfile.open(stream_dir / "original-w0-000000.tar") as archive:
        assert archive.getnames() == ["sample00000.cls", "sample00000.jpg", "sample00000.json"]


def test_a_writer_id_is_held_by_one_writer(stream_dir):
    with ShardWriter(stream_dir, "original", "w0", "h"):
        with pytest.raises(ShardError, match="already in use"):
            ShardWriter(stream_dir, "original", "w0", "h")
        ShardWriter(stream_dir, "original", "w1", "h").close()


def test_restarted_writer_continues_the_sequence(stream_dir):
    write_stream(stream_dir, 10, max_samples=7)
    with ShardWriter(stream_dir, "original", "w0", "h") as writer:
        writer.write(make_sample(50))
    assert [record.seq for record in Manifest(stream_dir).shards()] == [0, 1, 2]


def test_unit_progress_counts_samples_and_completion(stream_dir):
    with ShardWriter(stream_dir, "original", "w0", "h", max_samples=4) as writer:
        for index in range(6):
            writer.write(make_sample(index), unit="a")
        writer.end_unit("a")
        writer.write(make_sample(6), unit="b")
        writer.flush()
        writer.end_unit("empty")
    progress = Manifest(stream_dir).unit_progress()
    assert (progress["a"].samples, progress["a"].done) == (6, True)
    assert (progress["b"].samples, progress["b"].done) == (1, False)
    assert (progress["empty"].samples, progress["empty"].done) == (0, True)
    assert [record.kind for record in Manifest(stream_dir).records()] == ["shard", "shard", "units"]


@pytest.mark.parametrize("stream, writer_id", [("bad-stream", "w0"), ("original", "w.0")])
def test_names_that_would_break_shard_names_are_refused(stream_dir, stream, writer_id):
    with pytest.raises(ShardError, match="is invalid"):
        ShardWriter(stream_dir, stream, writer_id, "h")


def test_a_failed_commit_reaches_the_producer_and_stops_later_commits(stream_dir):
    def fail_on_first(record):
        raise OSError("disk full")

    writer = ShardWriter(stream_dir, "original", "w0", "h", max_samples=2, on_commit=fail_on_first)
    with pytest.raises(ShardError, match="committing a shard failed: disk full"):
        for index in range(10):
            writer.write(make_sample(index))
        writer.flush()
    writer.abort()
    assert len(Manifest(stream_dir).shards()) == 1  # the first line landed before its callback failed
