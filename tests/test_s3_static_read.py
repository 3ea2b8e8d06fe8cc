"""Trainers read a static stream from ``s3://`` through DALI's own S3 reader (a real SeaweedFS):
the same batches, in the same order, as the same shards on local disk; damaged objects are refused."""

import torch

from shards.storage import S3Store, S3Url
from shards.stores import check_committed_shards
from tests.test_loader_static import decoded, source, write_solid


def test_s3_stream_gives_the_same_batches_as_local_disk(seaweedfs, tmp_path):
    url = f"s3://{seaweedfs.new_bucket()}/job/s"
    write_solid(tmp_path, range(12), max_samples=5)
    write_solid(url, range(12), max_samples=5)
    local, remote = source(tmp_path, batch_size=4, seed=3), source(url, batch_size=4, seed=3)
    for _ in range(4):  # past one epoch of 12
        expected, got = local.next_batch(), remote.next_batch()
        assert decoded(got) == decoded(expected)
        assert torch.equal(got.labels, expected.labels)
    assert remote.stats.samples == 16 and remote.stats.bad_samples == 0


def test_a_truncated_or_missing_object_is_damaged_not_read(seaweedfs):
    url = f"s3://{seaweedfs.new_bucket()}/job/s"
    write_solid(url, range(15), max_samples=5)
    store = S3Store(S3Url.parse(url))
    store.put("s-w0-000001.tar", store.get("s-w0-000001.tar", "shard", 2**20)[:3000])
    store.delete("s-w0-000002.idx")
    readable, damaged = check_committed_shards(url)
    assert [str(shard) for shard, _ in readable] == [f"{url}/s-w0-000000.tar"]
    assert [shard.reason for shard in damaged] == [
        f"{url}/s-w0-000001.tar: shard has 3000 bytes, the manifest says {damaged[0].record.bytes} bytes",
        f"{url}/s-w0-000002.idx: DALI index is missing",
    ]
