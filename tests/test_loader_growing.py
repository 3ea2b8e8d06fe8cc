"""Growing streams: shards committed after the source started are read, and when_short policies;
rank split and resume on both backends (a directory, a prefix on the session's SeaweedFS)."""

import threading
import time

import pytest
import torch

from shards.writer import ShardWriter
from tests.test_loader_static import LOADER, decoded, write_solid
from trainers.config import StreamConfig
from trainers.data.source import build_batch_source
from trainers.errors import TrainError

FAST_POLL = LOADER.model_copy(update={"poll_interval_s": 0.02})


def growing_source(stream_dir, batch_size=4, rank=0, world_size=1, **stream):
    return build_batch_source("interventional", stream_dir, StreamConfig(batch_size=batch_size, **stream),
                              FAST_POLL, rank, world_size, "cpu", 0, growing=True)


@pytest.fixture
def location(request, tmp_path):
    """The stream: ``tmp_path`` itself, or (``indirect`` param "s3") a prefix in a new bucket."""
    if getattr(request, "param", "local") == "local":
        return tmp_path
    return f"s3://{request.getfixturevalue('seaweedfs').new_bucket()}/job/s"


@pytest.fixture
def writer(location):
    with ShardWriter(location, "s", "gen0", "testhash", max_samples=4) as open_writer:
        yield open_writer


both_backends = pytest.mark.parametrize("location", ["local", "s3"], indirect=True)


def test_shards_committed_after_start_are_read(tmp_path, writer):
    loader_source = growing_source(tmp_path, when_short="skip")
    assert loader_source.next_batch() is None
    write_solid(tmp_path, range(1, 9, 2), writer)
    first = {index for index, _ in decoded(loader_source.next_batch())}
    write_solid(tmp_path, range(9, 17, 2), writer)
    second = {index for index, _ in decoded(loader_source.next_batch())}
    assert first == set(range(1, 9, 2)) and second == set(range(9, 17, 2))
    assert loader_source.stats.backlog == 0 and loader_source.stats.skipped_batches == 1


def test_wait_blocks_until_a_writer_thread_commits(tmp_path, writer):
    loader_source = growing_source(tmp_path, when_short="wait", wait_timeout_s=20)
    thread = threading.Thread(target=lambda: (time.sleep(0.3), write_solid(tmp_path, range(1, 9, 2), writer)))
    thread.start()
    batch = loader_source.next_batch()
    thread.join()
    assert {index for index, _ in decoded(batch)} == set(range(1, 9, 2))
    assert loader_source.stats.wait_s >= 0.2


def test_wait_times_out_with_one_train_error(tmp_path, writer):
    write_solid(tmp_path, range(1, 5, 2), writer)
    loader_source = growing_source(tmp_path, when_short="wait", wait_timeout_s=0.2)
    with pytest.raises(TrainError, match=r"stream interventional: waited 0.2 s .* 2 samples in 1 committed shards"):
        loader_source.next_batch()
    assert loader_source.stats.wait_s >= 0.2


def test_reuse_fills_up_with_committed_samples(tmp_path, writer):
    write_solid(tmp_path, range(1, 7, 2), writer)  # 3 samples, batch of 4
    loader_source = growing_source(tmp_path, when_short="reuse")
    batch = loader_source.next_batch()
    assert len(batch.labels) == 4 and {index for index, _ in decoded(batch)} == {1, 3, 5}
    assert loader_source.stats.reused_batches == 1 and loader_source.stats.backlog == 0


def test_reuse_skips_while_nothing_is_committed(tmp_path, writer):
    loader_source = growing_source(tmp_path, when_short="reuse")
    assert loader_source.next_batch() is None
    assert loader_source.stats.skipped_batches == 1 and loader_source.stats.reused_batches == 0


def test_backlog_counts_committed_unread_samples(tmp_path, writer):
    write_solid(tmp_path, range(1, 21, 2), writer)
    loader_source = growing_source(tmp_path, batch_size=3)
    loader_source.next_batch()
    assert loader_source.stats.backlog == 7 and loader_source.stats.extra["committed_samples"] == 10


@both_backends
def test_ranks_take_alternate_shards(location, writer):
    write_solid(location, range(1, 33, 2), writer)  # 4 shards of 4
    parts = []
    for rank in range(2):
        part = growing_source(location, batch_size=4, rank=rank, world_size=2, when_short="skip")
        parts.append({index for _ in range(2) for index, _ in decoded(part.next_batch())})
        assert part.next_batch() is None
    assert parts[0].isdisjoint(parts[1]) and parts[0] | parts[1] == set(range(1, 33, 2))


@both_backends
def test_state_dict_resumes_at_the_same_position(location, writer):
    write_solid(location, range(1, 25, 2), writer)
    uninterrupted = growing_source(location, batch_size=3, augment="additional", when_short="reuse")
    interrupted = growing_source(location, batch_size=3, augment="additional", when_short="reuse")
    for _ in range(2):
        uninterrupted.next_batch(), interrupted.next_batch()
    state = interrupted.state_dict()
    interrupted.close()
    write_solid(location, range(25, 33, 2), writer)  # commits after the save are still picked up
    resumed = growing_source(location, batch_size=3, augment="additional", when_short="reuse")
    resumed.load_state_dict(state)
    for _ in range(5):
        expected, got = uninterrupted.next_batch(), resumed.next_batch()
        assert torch.equal(expected.images, got.images) and torch.equal(expected.labels, got.labels)
    # 16 samples over 7 batches of 3: the last two batches reuse.
    assert resumed.stats.reused_batches == uninterrupted.stats.reused_batches == 2


def test_corrupt_jpeg_in_a_growing_stream_is_skipped(tmp_path, writer):
    writer.write({"__key__": "broken", "jpg": b"\xff\xd8\xff" + b"junk" * 10, "cls": 0, "json": {}})
    write_solid(tmp_path, range(1, 9, 2), writer)
    loader_source = growing_source(tmp_path, batch_size=4)
    assert {index for index, _ in decoded(loader_source.next_batch())} == set(range(1, 9, 2))
    assert loader_source.stats.bad_samples == 1
