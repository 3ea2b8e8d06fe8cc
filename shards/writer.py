"""The shard writer: rolls shards by samples and bytes and commits each one atomically.

Commit order (a crash at any point leaves only files the next writer start removes):
1. the tar is written to ``<name>.tar.tmp`` through ``webdataset.TarWriter``, hashed on the way;
2. flushed, fsynced, renamed to ``<name>.tar``; its DALI index is written the same way;
3. one line is appended to the stream's manifest. Only now does any reader see the shard.
"""

import fcntl
import hashlib
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import webdataset

from shards.errors import ShardError
from shards.index import IndexMember, format_index
from shards.manifest import Manifest, ManifestRecord
from shards.sample import encode_sample

TAR_BLOCK_BYTES = 512
# tarfile ends an archive with two zero blocks and pads it to a 20-block record.
TAR_END_BYTES = 2 * TAR_BLOCK_BYTES
TAR_RECORD_BYTES = 20 * TAR_BLOCK_BYTES
TEMP_SUFFIX = ".tmp"
_NAME_PART = re.compile(r"^[A-Za-z0-9_]+$")


def shard_name(stream: str, writer_id: str, seq: int) -> str:
    """File stem of a shard: ``<stream>-<writer>-<seq>``."""
    return f"{stream}-{writer_id}-{seq:06d}"


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _tar_bytes(fields: dict[str, Any]) -> int:
    """Bytes a sample occupies in a USTAR tar: one header block per member plus padded data."""
    return sum(
        TAR_BLOCK_BYTES + _round_up(len(value), TAR_BLOCK_BYTES)
        for name, value in fields.items()
        if name != "__key__"
    )


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_durably(path: Path, data: bytes) -> None:
    temp = path.with_name(path.name + TEMP_SUFFIX)
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


class _HashingFile:
    """A write-only file wrapper that hashes and counts what passes through it."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.bytes += len(data)
        return self.raw.write(data)


class _OpenShard:
    """The shard being filled: its temp file, the tar stream and what the manifest will need."""

    def __init__(self, stream_dir: Path, name: str):
        self.tar_path = stream_dir / f"{name}.tar"
        self.temp_path = stream_dir / f"{name}.tar{TEMP_SUFFIX}"
        self.raw = open(self.temp_path, "wb")
        self.hashing = _HashingFile(self.raw)
        # Fixed mtime: the same samples always give the same bytes (and sha256).
        self.tar = webdataset.TarWriter(self.hashing, encoder=False, mtime=0)
        self.members: list[list[IndexMember]] = []
        self.class_counts: Counter[int] = Counter()
        self.unit_samples: Counter[str] = Counter()

    @property
    def samples(self) -> int:
        return len(self.members)

    @property
    def bytes_so_far(self) -> int:
        return self.tar.tarstream.offset

    def add(self, fields: dict[str, Any], unit: str | None) -> None:
        start = self.tar.tarstream.offset
        self.tar.write(fields)
        # TarWriter writes members in sorted field order, one 512-byte header each (keys are
        # short enough for USTAR), so every data offset follows from the start offset.
        members, offset = [], start
        for field in sorted(name for name in fields if name != "__key__"):
            size = len(fields[field])
            members.append(IndexMember(f"{fields['__key__']}.{field}", offset + TAR_BLOCK_BYTES, size))
            offset += TAR_BLOCK_BYTES + _round_up(size, TAR_BLOCK_BYTES)
        assert offset == self.tar.tarstream.offset, "tar layout differs from the index's assumption"
        self.members.append(members)
        self.class_counts[int(fields["cls"])] += 1
        if unit is not None:
            self.unit_samples[unit] += 1

    def finish(self) -> tuple[str, int]:
        """Close the tar durably under its final name; return (sha256, bytes)."""
        self.tar.close()
        self.raw.flush()
        os.fsync(self.raw.fileno())
        self.raw.close()
        os.replace(self.temp_path, self.tar_path)
        _write_durably(self.tar_path.with_suffix(".idx"), format_index(self.members).encode("utf-8"))
        return self.hashing.sha256.hexdigest(), self.hashing.bytes

    def abandon(self) -> None:
        """Delete the temp file; the tar is closed first so tarfile has nothing left to flush."""
        self.tar.close()
        self.raw.close()
        self.temp_path.unlink(missing_ok=True)


class ShardWriter:
    """Writes samples of one stream into shards under ``stream_dir``, committing each atomically.

    One writer id must be used by one live writer at a time (enforced with a lock file).
    Work units: pass ``unit=`` with each sample and call ``end_unit`` after a unit's last sample;
    the manifest then records per shard how many samples of each unit it holds and which units
    completed, which is what ``Manifest.unit_progress`` resumes from.

    Args:
        stream_dir: directory of the stream (holds its shards and manifest).
        stream: stream name, e.g. ``interventional``.
        writer_id: unique id of this writer within the stream, e.g. ``actor3``.
        config_hash: hash of the job config, recorded in every manifest line.
        max_samples: roll to a new shard at this many samples.
        max_bytes: roll before a sample would push the tar past this size.
        on_commit: called with each committed manifest record (metrics, progress).
    """

    def __init__(
        self,
        stream_dir: Path,
        stream: str,
        writer_id: str,
        config_hash: str,
        max_samples: int = 1000,
        max_bytes: int = 256 * 2**20,
        on_commit: Callable[[ManifestRecord], None] | None = None,
    ):
        for label, value in (("stream", stream), ("writer id", writer_id)):
            if not _NAME_PART.match(value):
                raise ShardError(f"{label} {value!r} is invalid: use characters from [A-Za-z0-9_]")
        if max_samples < 1 or max_bytes < 1:
            raise ShardError(f"max_samples and max_bytes must be >= 1 (got {max_samples}, {max_bytes})")
        self.stream_dir = Path(stream_dir)
        self.stream = stream
        self.writer_id = writer_id
        self.config_hash = config_hash
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self.on_commit = on_commit
        self.manifest = Manifest(self.stream_dir)
        self.stream_dir.mkdir(parents=True, exist_ok=True)
        self._lock = self._acquire_writer_lock()
        self._next_seq = self._recover()
        self._open: _OpenShard | None = None
        self._units_done: list[str] = []

    def _acquire_writer_lock(self) -> BinaryIO:
        lock = open(self.stream_dir / f".{self.stream}-{self.writer_id}.lock", "wb")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ShardError(
                f"writer id {self.writer_id!r} is already in use in {self.stream_dir}; "
                "give each concurrent writer its own id"
            ) from None
        return lock

    def _recover(self) -> int:
        """Remove this writer's uncommitted files (temp files, shards renamed but never added to
        the manifest) and return the next sequence number."""
        mine = [r for r in self.manifest.shards() if r.writer == self.writer_id]
        committed = {r.name.removesuffix(".tar") for r in mine}
        prefix = f"{self.stream}-{self.writer_id}-"
        for path in self.stream_dir.glob(prefix + "*"):
            stem = path.name.split(".", 1)[0]
            if stem not in committed:
                path.unlink()
        seqs = [r.seq for r in self.manifest.records() if r.writer == self.writer_id]
        return max(seqs, default=-1) + 1

    def write(self, sample: dict[str, Any], unit: str | None = None) -> None:
        """Validate and write one sample (raises SampleError and writes nothing if invalid)."""
        fields = encode_sample(sample)
        if self._open is not None and (
            self._open.samples >= self.max_samples
            or _round_up(self._open.bytes_so_far + _tar_bytes(fields) + TAR_END_BYTES, TAR_RECORD_BYTES) > self.max_bytes
        ):
            self.flush()
        if self._open is None:
            self._open = _OpenShard(self.stream_dir, shard_name(self.stream, self.writer_id, self._next_seq))
        self._open.add(fields, unit)

    def end_unit(self, unit: str) -> None:
        """Mark ``unit`` complete; it is recorded with the shard that holds its last sample."""
        self._units_done.append(unit)

    def flush(self) -> ManifestRecord | None:
        """Commit the open shard now (if it has samples); return its manifest record."""
        shard = self._open
        if shard is None:
            return None
        self._open = None
        sha256, size = shard.finish()
        record = ManifestRecord(
            name=shard.tar_path.name,
            samples=shard.samples,
            bytes=size,
            sha256=sha256,
            class_counts=dict(shard.class_counts),
            writer=self.writer_id,
            seq=self._next_seq,
            work_units=dict(shard.unit_samples),
            units_done=self._units_done,
            config_hash=self.config_hash,
            time=time.time(),
        )
        self._commit(record)
        return record

    def _commit(self, record: ManifestRecord) -> None:
        _fsync_directory(self.stream_dir)
        self.manifest.append([record])
        self._next_seq += 1
        self._units_done = []
        if self.on_commit is not None:
            self.on_commit(record)

    def close(self) -> None:
        """Commit what is open, record pending unit completions, and release the writer id."""
        try:
            if self._open is not None:
                self.flush()
            elif self._units_done:
                self._commit(ManifestRecord(
                    kind="units",
                    writer=self.writer_id,
                    seq=self._next_seq,
                    units_done=self._units_done,
                    config_hash=self.config_hash,
                    time=time.time(),
                ))
        finally:
            self._lock.close()

    def abort(self) -> None:
        """Drop the open shard without committing it (used on errors and shutdown)."""
        if self._open is not None:
            self._open.abandon()
            self._open = None
        self._lock.close()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
