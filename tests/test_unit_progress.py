"""Unit progress is followed, not re-read: the tracker advanced commit by commit equals a fresh read,
parses only the bytes committed since its last refresh, and leaves a torn last line for later."""

from pathlib import Path

import pytest

from datagen.unit_writer import UnitWriter
from shards.config import StoreRef
from shards.errors import ManifestError
from shards.manifest import MANIFEST_NAME, Manifest, ManifestRecord, UnitTracker
from shards.writer import ShardWriter
from tests.conftest import make_sample


def _write_units(writer: ShardWriter, units: list[tuple[str, int]], first_index: int) -> int:
    index = first_index
    for unit, samples in units:
        for _ in range(samples):
            writer.write(make_sample(index), unit=unit)
            index += 1
        writer.end_unit(unit)
    return index


def test_the_tracker_advanced_after_every_commit_equals_a_fresh_read(stream_dir):
    tracker = UnitTracker(stream_dir)
    assert tracker.refresh().progress() == {}  # no manifest yet: nothing, and no error
    index = 0
    with ShardWriter(stream_dir, "original", "w0", "h", max_samples=3) as writer:
        for round_number in range(6):
            # Units of 1, 2 and 5 samples: some end mid-shard, some span shards.
            index = _write_units(writer, [(f"u{round_number}-{size}", size) for size in (1, 2, 5)], index)
            writer.write(make_sample(index), unit=f"partial{round_number}")  # not ended: done stays False
            index += 1
            writer.flush()
            assert tracker.refresh().progress() == Manifest(stream_dir).unit_progress()
    assert tracker.refresh().progress() == Manifest(stream_dir).unit_progress()  # the closing units line
    progress = tracker.progress()
    assert (progress["u5-5"].samples, progress["u5-5"].done) == (5, True)
    assert (progress["partial0"].samples, progress["partial0"].done) == (1, False)
    assert tracker.get("never-written") is None and not tracker.is_done("partial0")


def test_a_refresh_reads_only_the_lines_committed_since_the_last(stream_dir):
    with ShardWriter(stream_dir, "original", "w0", "h", max_samples=2) as writer:
        _write_units(writer, [("a", 4)], 0)
    tracker = UnitTracker(stream_dir).refresh()
    manifest = stream_dir / MANIFEST_NAME
    assert tracker.follower.offset == manifest.stat().st_size
    # Spoil the lines already taken in, keeping their length: a tracker that re-read the manifest
    # from the start would now fail on them; one that follows never looks at them again.
    taken = tracker.follower.offset
    with open(manifest, "r+b") as handle:
        handle.write(b"x" * (taken - 1))
    # (Appended as a writer commits, without a writer: a new writer's start re-reads the manifest.)
    Manifest(stream_dir).append([ManifestRecord(name="original-w1-000000.tar", samples=3, sha256="0" * 64,
                                                class_counts={0: 3}, writer="w1", seq=0, work_units={"b": 3},
                                                units_done=["b"], config_hash="h", time=0.0)])
    progress = tracker.refresh().progress()
    assert (progress["a"].samples, progress["b"].samples, progress["b"].done) == (4, 3, True)
    assert tracker.follower.offset == manifest.stat().st_size
    with pytest.raises(ManifestError, match="bad manifest line"):
        Manifest(stream_dir).unit_progress()  # the from-scratch read does meet the spoilt lines


def test_a_torn_last_line_is_left_until_it_is_whole(stream_dir):
    with ShardWriter(stream_dir, "original", "w0", "h", max_samples=2) as writer:
        _write_units(writer, [("a", 2)], 0)
    with ShardWriter(stream_dir, "original", "w1", "h", max_samples=2) as writer:
        _write_units(writer, [("b", 2)], 10)
    manifest = stream_dir / MANIFEST_NAME
    whole = manifest.read_bytes()
    last_line_start = whole.rstrip(b"\n").rfind(b"\n") + 1
    manifest.write_bytes(whole[: last_line_start + 20])  # a crash mid-append: no newline yet
    tracker = UnitTracker(stream_dir).refresh()
    assert tracker.progress() == Manifest(stream_dir).unit_progress()
    assert tracker.is_done("a") and tracker.get("b") is None
    assert tracker.follower.offset == last_line_start  # the torn bytes are not taken in
    with open(manifest, "ab") as handle:
        handle.write(whole[last_line_start + 20 :])
    assert tracker.refresh().is_done("b") and tracker.get("b").samples == 2


def test_a_unit_writer_sees_units_other_writers_commit_after_it_started(tmp_path: Path):
    store = StoreRef(tmp_path / "store", 4, 10**9, "h")
    first, second = UnitWriter(store, "original", "w0"), UnitWriter(store, "original", "w1")

    def samples(count: int, base: int):
        return lambda start: (make_sample(base + index) for index in range(start, count))

    assert first.write_unit("u0", samples(3, 0)).images == 3
    first.close()
    assert second.write_unit("u0", samples(3, 0)).images == 0  # done by w0: skipped
    assert second.write_unit("u1", samples(6, 10)).images == 6
    second.close()
    assert first.write_unit("u1", samples(6, 10)).images == 0  # done by w1 after w0 had started
    first.close()
    keys = [record.work_units for record in Manifest(store.stream_dir("original")).shards()]
    assert sum(units.get("u0", 0) for units in keys) == 3 and sum(units.get("u1", 0) for units in keys) == 6
