"""Decoding runs ahead of the step: the next batch is scheduled before it is asked for, static
streams decode inside the reader's DALI graph, the rebuild-and-probe path runs only for a batch
that fails, and a restore still gives the identical next batches."""

import torch

from shards.writer import ShardWriter
from tests.test_loader_static import LOADER, _write_with_corrupt_jpeg, decoded, solid_sample, source, write_solid
from trainers.config import StreamConfig
from trainers.data.source import build_batch_source


def growing_source(stream_dir, batch_size=4, loader=LOADER, **stream):
    return build_batch_source("interventional", stream_dir, StreamConfig(batch_size=batch_size, **stream),
                              loader, 0, 1, "cpu", 0, growing=True)


def same_batches(first, second, count: int) -> None:
    for _ in range(count):
        expected, got = first.next_batch(), second.next_batch()
        assert torch.equal(expected.images, got.images) and torch.equal(expected.labels, got.labels)


def test_static_stream_decodes_in_the_reader_graph_and_schedules_the_next_batch(tmp_path):
    write_solid(tmp_path, range(20), max_samples=4)
    loader_source = source(tmp_path, batch_size=4)
    assert LOADER.prefetch_queue_depth >= 2
    graph = loader_source._rows.pipeline.serialize()
    assert b"readers__Webdataset" in graph and b"decoders__ImageRandomCrop" in graph
    assert b"ExternalSource" in graph  # only the per-sample placeholder choice: no encoded bytes go in
    for _ in range(3):
        loader_source.next_batch()
        assert loader_source.batches_ahead == LOADER.prefetch_queue_depth - 1
    assert loader_source.failed_batches == 0  # clean data never probes


def test_growing_stream_submits_the_next_batch_and_counts_it_in_the_backlog(tmp_path):
    write_solid(tmp_path, range(1, 25, 2))  # 12 samples
    loader_source = growing_source(tmp_path, batch_size=4, when_short="skip")
    loader_source.next_batch()
    assert loader_source.batches_ahead == 1 and loader_source.stats.backlog == 8
    loader_source.next_batch()
    loader_source.next_batch()
    # Nothing is left to draw ahead, and the skip policy does not act before it is asked.
    assert loader_source.batches_ahead == 0 and loader_source.stats.skipped_batches == 0
    assert loader_source.next_batch() is None and loader_source.stats.skipped_batches == 1
    assert loader_source.failed_batches == 0


def test_growing_stream_with_prefetch_depth_one_decodes_on_demand(tmp_path):
    write_solid(tmp_path, range(1, 17, 2))
    loader_source = growing_source(tmp_path, loader=LOADER.model_copy(update={"prefetch_queue_depth": 1}))
    assert {index for index, _ in decoded(loader_source.next_batch())} | {
        index for index, _ in decoded(loader_source.next_batch())} == set(range(1, 17, 2))
    assert loader_source.batches_ahead == 0


def test_static_bad_batch_probes_once_and_a_restore_inside_it_repeats_the_batches(tmp_path):
    _write_with_corrupt_jpeg(tmp_path, corrupt_index=5, count=24)
    uninterrupted = source(tmp_path, batch_size=4, augment="additional")
    interrupted = source(tmp_path, batch_size=4, augment="additional")
    for _ in range(5):  # until the batch holding the corrupt image (the shuffle places it)
        uninterrupted.next_batch(), interrupted.next_batch()
        if interrupted.failed_batches:
            break
    assert interrupted.failed_batches == 1 and interrupted.stats.bad_samples == 1
    # The batch after the bad one lent a row to fill it up: the position is inside that batch.
    state = interrupted.state_dict()
    assert state["reader"]["taken_from_batch"] == 1
    resumed = source(tmp_path, batch_size=4, augment="additional")
    resumed.load_state_dict(state)
    same_batches(uninterrupted, resumed, 6)  # crosses the epoch, and meets the corrupt image again
    assert resumed.stats.bad_samples == uninterrupted.stats.bad_samples


def test_growing_restore_repeats_the_queued_batch_and_the_bad_batch_after_it(tmp_path):
    with ShardWriter(tmp_path, "s", "gen0", "testhash", max_samples=4) as writer:
        write_solid(tmp_path, range(1, 25, 2), writer)  # 12 samples
        uninterrupted = growing_source(tmp_path, batch_size=4, augment="additional", when_short="skip")
        interrupted = growing_source(tmp_path, batch_size=4, augment="additional", when_short="skip")
        for _ in range(2):
            uninterrupted.next_batch(), interrupted.next_batch()
        state = interrupted.state_dict()
        assert len(state["reader"]["queued"]) == 1  # saved with the third batch decoding ahead
        # Committed after the save: a broken image and 8 good ones.
        writer.write({"__key__": "broken", "jpg": b"\xff\xd8\xff" + b"junk" * 10, "cls": 0, "json": {}})
        write_solid(tmp_path, range(25, 41, 2), writer)
    resumed = growing_source(tmp_path, batch_size=4, augment="additional", when_short="skip")
    resumed.load_state_dict(state)
    same_batches(uninterrupted, resumed, 3)  # the queued batch, then the 8 new good ones and a refill
    assert resumed.stats.bad_samples == uninterrupted.stats.bad_samples == 1
    assert resumed.failed_batches == uninterrupted.failed_batches == 1


def test_static_restore_inside_a_batch_with_a_placeholder_repeats_its_rows(tmp_path):
    from trainers.data.static import StaticReader

    _write_with_corrupt_jpeg(tmp_path, corrupt_index=5, count=24)

    def reader() -> StaticReader:
        return StaticReader("s", tmp_path, 4, "additional", LOADER, "cpu", 0, 1, seed=0)

    uninterrupted, interrupted = reader(), reader()
    for _ in range(12):  # half batches, until half of the batch holding the corrupt image is out
        uninterrupted.take(2), interrupted.take(2)
        if interrupted.failed_batches and interrupted.state_dict()["taken_from_batch"] == 2:
            break
    state = interrupted.state_dict()
    assert state["placeholders"] and state["taken_from_batch"] == 2
    resumed = reader()
    resumed.load_state_dict(state)
    assert resumed.failed_batches == 0  # the saved placeholder is decoded in its place: no new failure
    for _ in range(4):
        expected, got = uninterrupted.take(2), resumed.take(2)
        assert torch.equal(expected.images, got.images) and torch.equal(expected.labels, got.labels)
        assert expected.bad == got.bad and expected.where == got.where
