"""The shard writer: rolls shards by samples and bytes and commits each one atomically.

Commit order (a crash at any point leaves only files the next writer start removes):
1. the tar is written to ``<name>.tar.tmp`` through ``webdataset.TarWriter``;
2. fsynced, hashed, renamed to ``<name>.tar`` (or uploaded, on an ``s3://`` stream); its DALI
   index is written the same way (``shards.publish``);
3. one record is committed to the stream's manifest (appended to ``manifest.jsonl``, or a new
   segment object on object storage). Only now does any reader see the shard.
Steps 2-3 run on a committer thread, one shard after another in order, so fsync and hashing
overlap with writing the next shard instead of stalling the producer.
"""

import hashlib
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import webdataset

from shards.errors import ShardError
from shards.files import TEMP_SUFFIX
from shards.index import IndexMember, format_index
from shards.manifest import ManifestRecord
from shards.names import check_name_part, shard_name
from shards.publish import LocalPublisher, S3Publisher
from shards.sample import encode_sample
from shards.storage import S3Url
from shards.stores import stream_location

TAR_BLOCK_BYTES = 512
# tarfile ends an archive with two zero blocks and pads it to a 20-block record.
TAR_END_BYTES = 2 * TAR_BLOCK_BYTES
TAR_RECORD_BYTES = 20 * TAR_BLOCK_BYTES


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _tar_bytes(fields: dict[str, Any]) -> int:
    """Bytes a sample occupies in a USTAR tar: one header block per member plus padded data."""
    return sum(
        TAR_BLOCK_BYTES + _round_up(len(value), TAR_BLOCK_BYTES)
        for name, value in fields.items()
        if name != "__key__"
    )


class _OpenShard:
    """The shard being filled: its temp file, the tar stream and what the manifest will need."""

    def __init__(self, spool_dir: Path, name: str):
        self.tar_name = f"{name}.tar"
        self.temp_path = spool_dir / f"{name}.tar{TEMP_SUFFIX}"
        self.raw = open(self.temp_path, "wb")
        # Fixed mtime: the same samples always give the same bytes (and sha256).
        self.tar = webdataset.TarWriter(self.raw, encoder=False, mtime=0)
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

    def close_tar(self) -> None:
        """End the archive (writer thread); the file stays a temp file until ``persist``."""
        self.tar.close()
        self.raw.flush()

    def persist(self, publisher: LocalPublisher | S3Publisher) -> tuple[str, int, str]:
        """Make the shard durable under its final name (committer thread); return (sha256, bytes,
        the index's sha256)."""
        index = format_index(self.members).encode("utf-8")
        sha256, size = publisher.publish(self.temp_path, self.raw, self.tar_name, index)
        return sha256, size, hashlib.sha256(index).hexdigest()

    def abandon(self) -> None:
        """Delete the temp file; the tar is closed first so tarfile has nothing left to flush."""
        self.tar.close()
        self.raw.close()
        self.temp_path.unlink(missing_ok=True)


class _Committer:
    """Runs commit jobs on one background thread, in submission order.

    At most ``max_pending`` closed shards wait, so a slow disk slows the producer instead of
    piling up temp files. The first failure stops further commits (later shards must not land
    before an earlier one) and is re-raised to the producer.
    """

    def __init__(self, max_pending: int = 2):
        self._jobs: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="shard-committer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                if self._error is None:
                    job()
            except BaseException as error:  # handed to the producer by raise_if_failed
                self._error = error
            finally:
                self._jobs.task_done()
        self._jobs.task_done()

    def raise_if_failed(self) -> None:
        if self._error is not None:
            raise ShardError(f"committing a shard failed: {self._error}") from self._error

    def submit(self, job: Callable[[], None]) -> None:
        self.raise_if_failed()
        self._jobs.put(job)

    def wait(self) -> None:
        """Block until every submitted job ran; raise if one failed."""
        self._jobs.join()
        self.raise_if_failed()

    def stop(self) -> None:
        self._jobs.put(None)
        self._thread.join()


class ShardWriter:
    """Writes samples of one stream into shards under ``stream_dir``, committing each atomically.

    One writer id must be used by one live writer at a time (enforced with a lock file).
    Work units: pass ``unit=`` with each sample and call ``end_unit`` after a unit's last sample;
    the manifest then records per shard how many samples of each unit it holds and which units
    completed, which is what ``Manifest.unit_progress`` resumes from.

    Args:
        stream_dir: directory of the stream (holds its shards and manifest), or its ``s3://`` prefix.
        stream: stream name, e.g. ``interventional``.
        writer_id: unique id of this writer within the stream, e.g. ``actor3``.
        config_hash: hash of the job config, recorded in every manifest line.
        max_samples: roll to a new shard at this many samples.
        max_bytes: roll before a sample would push the tar past this size.
        on_commit: called with each committed manifest record (metrics, progress), on the
            committer thread.
    """

    def __init__(
        self,
        stream_dir: "Path | str | S3Url",
        stream: str,
        writer_id: str,
        config_hash: str,
        max_samples: int = 1000,
        max_bytes: int = 256 * 2**20,
        on_commit: Callable[[ManifestRecord], None] | None = None,
    ):
        check_name_part(stream, "stream")
        check_name_part(writer_id, "writer id")
        if max_samples < 1 or max_bytes < 1:
            raise ShardError(f"max_samples and max_bytes must be >= 1 (got {max_samples}, {max_bytes})")
        self.stream_dir = stream_location(stream_dir)
        self.stream = stream
        self.writer_id = writer_id
        self.config_hash = config_hash
        self.max_samples = max_samples
        self.max_bytes = max_bytes
        self.on_commit = on_commit
        self._publisher = S3Publisher(self.stream_dir) if isinstance(self.stream_dir, S3Url) else LocalPublisher(self.stream_dir)
        self.manifest = self._publisher.manifest
        try:
            self._publisher.lock(stream, writer_id)
            self._next_seq = self._recover()
        except BaseException:
            self._publisher.close()
            raise
        self._open: _OpenShard | None = None
        self._units_done: list[str] = []
        self._committer = _Committer()

    def _recover(self) -> int:
        """Remove this writer's uncommitted files (temp files, shards renamed but never added to
        the manifest) and return the next sequence number."""
        mine = [r for r in self.manifest.records() if r.writer == self.writer_id]  # one pass over the manifest
        committed = {r.name.removesuffix(".tar") for r in mine if r.kind == "shard"}
        self._publisher.remove_uncommitted(f"{self.stream}-{self.writer_id}-", committed)
        return max((r.seq for r in mine), default=-1) + 1

    def write(self, sample: dict[str, Any], unit: str | None = None) -> None:
        """Validate and write one sample (raises SampleError and writes nothing if invalid)."""
        fields = encode_sample(sample)
        if self._open is not None and (
            self._open.samples >= self.max_samples
            or _round_up(self._open.bytes_so_far + _tar_bytes(fields) + TAR_END_BYTES, TAR_RECORD_BYTES) > self.max_bytes
        ):
            self._roll()
        if self._open is None:
            self._open = _OpenShard(self._publisher.spool_dir, shard_name(self.stream, self.writer_id, self._next_seq))
        self._open.add(fields, unit)

    def end_unit(self, unit: str) -> None:
        """Mark ``unit`` complete; it is recorded with the shard that holds its last sample."""
        self._units_done.append(unit)

    def _roll(self) -> None:
        """Close the open shard and hand it to the committer (no-op when none is open)."""
        shard = self._open
        if shard is None:
            return
        self._open = None
        shard.close_tar()
        record = dict(
            name=shard.tar_name,
            samples=shard.samples,
            class_counts=dict(shard.class_counts),
            work_units=dict(shard.unit_samples),
            units_done=self._units_done,
        )
        self._submit_commit(record, shard)

    def _submit_commit(self, fields: dict[str, Any], shard: "_OpenShard | None") -> None:
        seq = self._next_seq
        self._next_seq += 1
        self._units_done = []

        def commit() -> None:
            sha256, size, index_sha256 = shard.persist(self._publisher) if shard else (None, 0, None)
            record = ManifestRecord(
                **fields, sha256=sha256, index_sha256=index_sha256, bytes=size, writer=self.writer_id, seq=seq,
                config_hash=self.config_hash, time=time.time(),
            )
            self.manifest.append([record])
            if self.on_commit is not None:
                self.on_commit(record)

        self._committer.submit(commit)

    def flush(self) -> None:
        """Commit the open shard (if it has samples) and wait until every shard is committed."""
        self._roll()
        self._committer.wait()

    def close(self) -> None:
        """Commit what is open, record pending unit completions, and release the writer id."""
        try:
            if self._open is not None:
                self._roll()
            elif self._units_done:
                self._submit_commit({"kind": "units", "units_done": self._units_done}, None)
            self._committer.wait()
        finally:
            self._committer.stop()
            self._publisher.close()

    def abort(self) -> None:
        """Drop the open shard; shards already closed still commit (they are whole)."""
        if self._open is not None:
            self._open.abandon()
            self._open = None
        self._committer.stop()
        self._publisher.close()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
