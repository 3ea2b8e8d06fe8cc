"""The bulk index check (``shards.canonical_index``) accepts only what the line-by-line check accepts.

Its verdict is "passes" or "cannot tell": the reader's start trusts it, so an index it accepts must
pass ``check_shard`` with the same keys. Checked on the writer's own indexes (which it must accept,
or the reader's start would be slow again) and on thousands of mutations of one. An index with its
manifest line's ``index_sha256`` is not checked again at all: only its keys are read.
"""

import hashlib
import random
from types import SimpleNamespace

import pytest

import shards.reader
from shards.canonical_index import canonical_index_keys, written_index_keys
from shards.errors import ManifestError, ShardError
from shards.index import parse_index
from shards.manifest import Manifest, ManifestRecord
from shards.names import index_file_name
from shards.reader import check_committed_shards, check_shard, split_readable
from shards.writer import ShardWriter
from tests.conftest import encoded_image, write_stream

pytestmark = pytest.mark.timeout(120)

SAMPLES = 5


@pytest.fixture
def shard(tmp_path):
    """(tar path, manifest record, index bytes) of one committed shard of SAMPLES samples."""
    with ShardWriter(tmp_path, "original", "w0", "test", max_samples=SAMPLES) as writer:
        for index in range(SAMPLES):
            writer.write({"__key__": f"key_{index}-x", "png": encoded_image(index, fmt="PNG"), "cls": index, "json": {"index": index}})
    (record,) = Manifest(tmp_path).shards()
    path = tmp_path / record.name
    return path, record, path.with_name(index_file_name(path.name)).read_bytes()


def _line_by_line_keys(path, record) -> list[str] | None:
    try:
        return [members[0].key for members in check_shard(path, record)]
    except ShardError:
        return None


def test_the_writers_index_is_canonical_and_gives_the_same_keys(shard):
    path, record, data = shard
    keys = canonical_index_keys(data, record.samples, record.bytes)
    assert keys == _line_by_line_keys(path, record) == [f"key_{index}-x" for index in range(SAMPLES)]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"json 1536", b"json 1536 "),  # a doubled space
        (b"png ", b"png\t"),  # a tab
        (b"\n", b"\r\n"),  # a carriage return
        (b"key_1-x.json", b"key_2-x.json"),  # a member of another key on the line
        (b"key_0-x.png", b"key_0-x.jpg"),  # a member listed under another extension
        (b" 512 ", b" 511 "),  # a member inside the first header block
        (b"v1.2 5", b"v1.2 6"),  # more samples than the manifest's
    ],
)
def test_a_damaged_or_unusual_index_is_left_to_the_line_by_line_check(shard, old, new):
    path, record, data = shard
    assert old in data
    assert canonical_index_keys(data.replace(old, new, 1), record.samples, record.bytes) is None


def test_a_member_past_the_tars_end_is_not_canonical(shard):
    path, record, data = shard
    last = parse_index(data.decode(), "index")[-1][-1]
    assert canonical_index_keys(data, record.samples, last.offset + last.size) is not None
    assert canonical_index_keys(data, record.samples, last.offset + last.size - 1) is None


def _mutations(data: bytes, rng: random.Random):
    """Small edits of the index's text: one byte changed, inserted or deleted, or lines swapped."""
    alphabet = b" \n\t.0123456789_-akyjpgsoncl"
    for _ in range(3000):
        position = rng.randrange(len(data))
        kind = rng.randrange(4)
        if kind == 0:
            yield data[:position] + bytes([rng.choice(alphabet)]) + data[position + 1 :]
        elif kind == 1:
            yield data[:position] + bytes([rng.choice(alphabet)]) + data[position:]
        elif kind == 2:
            yield data[:position] + data[position + 1 :]
        else:
            lines = data.split(b"\n")
            first, second = rng.randrange(1, len(lines) - 1), rng.randrange(1, len(lines) - 1)
            lines[first], lines[second] = lines[second], lines[first]
            yield b"\n".join(lines)


def test_the_start_check_agrees_with_the_line_by_line_check_on_every_mutation(shard):
    """The start (``check_committed_shards``: the bulk check, then the first tar header) refuses
    exactly what ``check_shard`` refuses, and gives its keys."""
    path, record, data = shard
    index_path = path.with_name(index_file_name(path.name))
    in_bulk = 0
    for mutated in _mutations(data, random.Random(0)):
        index_path.write_bytes(mutated)
        keys = canonical_index_keys(mutated, record.samples, record.bytes)
        in_bulk += keys is not None
        line_by_line = _line_by_line_keys(path, record)
        readable, _ = check_committed_shards(path.parent)
        assert bool(readable) == (line_by_line is not None), mutated
        if keys is not None and line_by_line is not None:
            assert keys == line_by_line, mutated
    # The bulk check decides often: swapped lines and edited digits stay canonical.
    assert in_bulk > 100


def test_the_start_check_names_the_line_of_a_damaged_index(shard):
    """A damaged index falls back to the line-by-line check, whose message names the line."""
    path, record, data = shard
    path.with_name(index_file_name(path.name)).write_bytes(data.replace(b"key_1-x.json", b"key_2-x.json", 1))
    readable, damaged = check_committed_shards(path.parent)
    assert readable == []
    assert [shard.reason for shard in damaged] == [
        f"{path.with_name(index_file_name(path.name))}: line 3: members of two keys ('key_1-x', 'key_2-x') on one line"
    ]


def test_samples_of_different_fields_are_checked_line_by_line_and_pass(tmp_path):
    """Not canonical (some samples are JPEG, some PNG), so the bulk check cannot tell; the start does."""
    write_stream(tmp_path, 8, max_samples=8)
    (record,) = Manifest(tmp_path).shards()
    data = tmp_path.joinpath(index_file_name(record.name)).read_bytes()
    assert canonical_index_keys(data, record.samples, record.bytes) is None
    readable, damaged = check_committed_shards(tmp_path)
    assert [path.name for path, _ in readable] == [record.name] and damaged == []


def test_the_writer_records_its_index_digest_and_a_matching_index_is_read_for_its_keys_only(shard, monkeypatch):
    path, record, data = shard
    assert record.index_sha256 == hashlib.sha256(data).hexdigest()
    assert written_index_keys(data, record.samples) == [f"key_{index}-x" for index in range(SAMPLES)]
    assert written_index_keys(data, record.samples + 1) is None

    def no_bulk_check(*args):
        raise AssertionError("an index with its recorded digest was checked again")

    monkeypatch.setattr(shards.reader, "canonical_index_keys", no_bulk_check)
    readable, damaged = check_committed_shards(path.parent)
    assert [found.name for found, _ in readable] == [record.name] and damaged == []
    # Any other index bytes (here one sample's lines swapped) take the full check again.
    lines = data.split(b"\n")
    lines[1], lines[2] = lines[2], lines[1]
    path.with_name(index_file_name(path.name)).write_bytes(b"\n".join(lines))
    with pytest.raises(AssertionError, match="checked again"):
        check_committed_shards(path.parent)


def test_a_manifest_line_with_a_malformed_index_digest_is_refused(shard):
    path, record, _ = shard
    line = record.model_dump() | {"index_sha256": "ABC"}
    with pytest.raises(ValueError, match="index_sha256 must be 64 lowercase hex digits"):
        ManifestRecord.model_validate(line)
    (path.parent / "manifest.jsonl").write_text(ManifestRecord.model_construct(**line).model_dump_json() + "\n")
    with pytest.raises(ManifestError, match="index_sha256 must be 64 lowercase hex digits"):
        check_committed_shards(path.parent)


def test_a_repeated_key_damages_only_the_shard_that_repeats_it():
    keys = {"a": ["k1", "k2"], "b": ["k3", "k1"], "c": ["k3", "k4"], "d": ["k5", "k5"], "e": ["k6"]}
    shards_in_order = [(name, SimpleNamespace(name=f"{name}.tar")) for name in keys]
    readable, damaged = split_readable(shards_in_order, lambda name, record: keys[name])
    # c's k3 was only in the damaged b, so c stays readable.
    assert [name for name, _ in readable] == ["a", "c", "e"]
    assert [shard.reason for shard in damaged] == ["b: sample key 'k1' is also in a.tar", "d: sample key 'k5' is listed twice"]
