"""Trainers read a static stream from ``s3://`` (a real SeaweedFS) through copies on this node:
the same batches, in the same order, as the same shards on local disk; damaged objects are refused
and named by their URLs, with or without copies."""

import shutil

import pytest
import torch

from shards.s3_staging import staging_dir
from shards.storage import S3Store, S3Url
from shards.stores import check_committed_shards
from trainers.data.config import LoaderConfig
from trainers.data.static import StaticReader
from tests.test_loader_static import decoded, source, write_solid


@pytest.fixture
def stream_url(seaweedfs):
    """A stream prefix in a new bucket; this node's copies of it are removed after the test."""
    url = f"s3://{seaweedfs.new_bucket()}/job/s"
    yield url
    shutil.rmtree(staging_dir(S3Url.parse(url)), ignore_errors=True)


def test_s3_stream_gives_the_same_batches_as_local_disk(stream_url, tmp_path):
    url = stream_url
    write_solid(tmp_path, range(12), max_samples=5)
    write_solid(url, range(12), max_samples=5)
    local, remote = source(tmp_path, batch_size=4, seed=3), source(url, batch_size=4, seed=3)
    for _ in range(4):  # past one epoch of 12
        expected, got = local.next_batch(), remote.next_batch()
        assert decoded(got) == decoded(expected)
        assert torch.equal(got.labels, expected.labels)
    assert remote.stats.samples == 16 and remote.stats.bad_samples == 0


def test_a_reader_reads_copies_made_once_and_names_samples_by_their_objects(stream_url):
    url = stream_url
    write_solid(url, range(12), max_samples=5)
    reader = StaticReader("s", S3Url.parse(url), 4, "none", LoaderConfig(crop_size=8, resize_size=8), "cpu", 0, 1, seed=0)
    copies = sorted(path for path in staging_dir(S3Url.parse(url)).iterdir() if not path.name.startswith("."))
    assert [path.suffix for path in copies] == [".idx", ".tar"] * 3
    assert reader.pipeline is not None and all(where.startswith(f"{url}/s-w0-00000") for where in reader.take(4).where)
    written = {path: path.stat().st_mtime_ns for path in copies}
    check_committed_shards(url, stage=True)  # a restart, or another job reading the stream: nothing downloaded again
    assert {path: path.stat().st_mtime_ns for path in copies} == written


@pytest.mark.parametrize("stage", [False, True], ids=["objects", "copies"])
def test_a_truncated_or_missing_object_is_damaged_not_read(stream_url, stage):
    url = stream_url
    write_solid(url, range(15), max_samples=5)
    store = S3Store(S3Url.parse(url))
    store.put("s-w0-000001.tar", store.get("s-w0-000001.tar", "shard", 2**20)[:3000])
    store.delete("s-w0-000002.idx")
    readable, damaged = check_committed_shards(url, stage=stage)
    first = staging_dir(S3Url.parse(url)) / f"s-w0-000000-{readable[0][1].sha256[:16]}.tar" if stage else f"{url}/s-w0-000000.tar"
    assert [str(shard) for shard, _ in readable] == [str(first)]
    assert [shard.reason for shard in damaged] == [
        f"{url}/s-w0-000001.tar: shard has 3000 bytes, the manifest says {damaged[0].record.bytes} bytes",
        f"{url}/s-w0-000002.idx: DALI index is missing",
    ]
