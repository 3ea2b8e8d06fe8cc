"""The append-only manifest: one JSON line per committed shard, the store's only commit point.

Readers trust the manifest and never list directories to discover data. Appends take an
exclusive ``flock`` and issue a single ``write`` on an ``O_APPEND`` descriptor followed by
``fsync``, so concurrent writers in different processes never interleave lines.
"""

import fcntl
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shards.errors import ManifestError
from shards.files import open_regular
from shards.names import MAX_NAME_CHARS, shard_file_parts

MANIFEST_NAME = "manifest.jsonl"
MANIFEST_VERSION = 1
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ManifestRecord(BaseModel):
    """One manifest line.

    ``kind == "shard"`` commits a shard file. ``kind == "units"`` only marks work units done that
    ended after the writer's last shard without adding samples (a unit whose inputs were all
    unreadable), so unit completion is never lost.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: int = MANIFEST_VERSION
    kind: Literal["shard", "units"] = "shard"
    name: str | None = None
    samples: int = Field(default=0, ge=0)
    bytes: int = Field(default=0, ge=0)
    sha256: str | None = None
    # The sha256 of the shard's DALI index as its writer wrote it: a reader whose index has this
    # digest skips re-checking its lines (lines written before it existed lack it).
    index_sha256: str | None = None
    class_counts: dict[int, int] = Field(default_factory=dict)
    writer: str
    seq: int = Field(ge=0)
    work_units: dict[str, int] = Field(default_factory=dict)
    units_done: list[str] = Field(default_factory=list)
    config_hash: str
    time: float

    @model_validator(mode="after")
    def _check_shard_fields(self) -> "ManifestRecord":
        """A shard line names a shard file of this store, consistent with its own fields.

        The name is joined to the stream directory and opened by every reader, so it must be one
        the writer makes: never a path, a URL or ``pipe:...`` (which webdataset would run).
        """
        if self.kind == "units":
            if self.name is not None:
                raise ValueError("a units line names no shard")
            return self
        if self.name is None:
            raise ValueError("a shard line needs the shard's name")
        parts = shard_file_parts(self.name)
        if parts is None:
            raise ValueError(f"shard name {self.name[:MAX_NAME_CHARS]!r} is not a shard file of the store "
                             "(<stream>-<writer>-<seq>.tar, each part from [A-Za-z0-9_])")
        if parts[1:] != (self.writer, self.seq):
            raise ValueError(f"shard name {self.name!r} does not match the line's writer {self.writer!r} and seq {self.seq}")
        if self.sha256 is None or not _SHA256.fullmatch(self.sha256):
            raise ValueError("a shard line needs the shard's sha256 (64 lowercase hex digits)")
        if self.index_sha256 is not None and not _SHA256.fullmatch(self.index_sha256):
            raise ValueError("index_sha256 must be 64 lowercase hex digits")
        if sum(self.class_counts.values()) != self.samples:
            raise ValueError(f"class counts add up to {sum(self.class_counts.values())}, the line says {self.samples} samples")
        return self

    def to_line(self) -> bytes:
        return (self.model_dump_json() + "\n").encode("utf-8")


def parse_line(line: bytes, where: str) -> ManifestRecord:
    """Parse one manifest line, raising ManifestError naming ``where``."""
    try:
        return ManifestRecord.model_validate_json(line)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "line"
        message = first["msg"].removeprefix("Value error, ")
        raise ManifestError(f"{where}: bad manifest line ({field}: {message})") from None


def read_complete_lines(path: Path, offset: int) -> tuple[list[bytes], int]:
    """Read whole lines from ``offset``; a trailing line without newline is not yet complete.

    Returns:
        The complete lines and the offset just past the last complete line.
    """
    if not os.path.lexists(path):
        return [], offset
    with open_regular(path, "manifest") as handle:
        handle.seek(offset)
        data = handle.read()
    end = data.rfind(b"\n") + 1
    return data[:end].splitlines(), offset + end


@dataclass(frozen=True)
class UnitProgress:
    """How much of one work unit is committed."""

    samples: int = 0
    done: bool = False


class Manifest:
    """The manifest of one stream directory."""

    def __init__(self, stream_dir: Path):
        self.stream_dir = Path(stream_dir)
        self.path = self.stream_dir / MANIFEST_NAME

    def records(self) -> list[ManifestRecord]:
        """Every committed record, in commit order."""
        lines, _ = read_complete_lines(self.path, 0)
        return [parse_line(line, f"{self.path}:{number}") for number, line in enumerate(lines, 1)]

    def shards(self) -> list[ManifestRecord]:
        """Committed shard records (skipping unit-only lines), in commit order."""
        return [record for record in self.records() if record.kind == "shard"]

    def append(self, records: list[ManifestRecord]) -> None:
        """Append records atomically: all lines land in one locked write, or none do."""
        payload = b"".join(record.to_line() for record in records)
        self.stream_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            written = os.write(descriptor, payload)
            if written != len(payload):
                raise ManifestError(f"{self.path}: short append ({written} of {len(payload)} bytes)")
            os.fsync(descriptor)
        finally:
            os.close(descriptor)  # closing releases the lock

    def unit_progress(self) -> dict[str, UnitProgress]:
        """Committed samples and completion per work unit (the resume state of generation).

        A one-off read of the whole manifest; code that asks again and again keeps a UnitTracker.
        """
        return UnitTracker(self.stream_dir).refresh().progress()


class ManifestFollower:
    """The shard records of a growing manifest as they commit, one ``poll`` at a time; its position can be saved."""

    def __init__(self, stream_dir: Path, offset: int = 0):
        self.manifest = Manifest(stream_dir)
        self.offset = offset
        # Line numbers for messages, known when following from the start (a saved offset has none).
        self._lines_read: int | None = 0 if offset == 0 else None

    def poll(self) -> list[ManifestRecord]:
        """Shard records committed since the last poll."""
        return [record for record in self.poll_records() if record.kind == "shard"]

    def poll_records(self) -> list[ManifestRecord]:
        """Every record (shard and units lines) committed since the last poll, reading only the new bytes."""
        lines, end = read_complete_lines(self.manifest.path, self.offset)
        records, start = [], self.offset
        for number, line in enumerate(lines, 1):
            where = (f"{self.manifest.path}:{self._lines_read + number}" if self._lines_read is not None
                     else f"{self.manifest.path} (line at byte {start})")
            records.append(parse_line(line, where))
            start += len(line) + 1
        self.offset = end  # only past lines that parsed: a bad line is reported again, never skipped
        if self._lines_read is not None:
            self._lines_read += len(lines)
        return records

    def seen_records(self) -> list[ManifestRecord]:
        """Every record before the follower's position, in commit order (what its polls returned)."""
        if self.offset == 0:
            return []
        with open_regular(self.manifest.path, "manifest") as handle:
            lines = handle.read(self.offset).splitlines()
        return [parse_line(line, f"{self.manifest.path}:{number}") for number, line in enumerate(lines, 1)]

    def state_dict(self) -> dict[str, int]:
        return {"offset": self.offset}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.offset = int(state["offset"])
        self._lines_read = 0 if self.offset == 0 else None


class UnitTrackerBase:
    """Work-unit progress of one stream, built once and then advanced from the manifest's end.

    ``refresh`` parses only the records committed since the last one (through its follower's
    position), so asking about a unit costs the same at a job's first unit as at its hundred-thousandth;
    re-reading the whole manifest per unit would make a job quadratic in its size. Lines of every
    writer count, so a unit another writer committed (or half-committed before it died) is seen.
    Nothing is read before the first ``refresh``.

    Args:
        follower: the manifest's follower (a ManifestFollower, or a segments follower on object storage).
    """

    def __init__(self, follower):
        self.follower = follower
        self._samples: Counter[str] = Counter()
        self._done: set[str] = set()

    def refresh(self) -> "UnitTracker":
        """Take in the lines committed since the last refresh; return self."""
        for record in self.follower.poll_records():
            self._samples.update(record.work_units)
            self._done.update(record.units_done)
        return self

    def get(self, unit: str) -> UnitProgress | None:
        """The unit's progress as of the last refresh, None if no line names it."""
        if unit not in self._samples and unit not in self._done:
            return None
        return UnitProgress(samples=self._samples[unit], done=unit in self._done)

    def is_done(self, unit: str) -> bool:
        return unit in self._done

    def progress(self) -> dict[str, UnitProgress]:
        """Every unit a line names, with its progress as of the last refresh."""
        return {unit: UnitProgress(samples=self._samples[unit], done=unit in self._done)
                for unit in self._samples.keys() | self._done}


class UnitTracker(UnitTrackerBase):
    """UnitTrackerBase over the manifest file of a stream directory."""

    def __init__(self, stream_dir: Path):
        super().__init__(ManifestFollower(stream_dir))
