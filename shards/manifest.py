"""The append-only manifest: one JSON line per committed shard, the store's only commit point.

Readers trust the manifest and never list directories to discover data. Appends take an
exclusive ``flock`` and issue a single ``write`` on an ``O_APPEND`` descriptor followed by
``fsync``, so concurrent writers in different processes never interleave lines.
"""

import fcntl
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shards.errors import ManifestError

MANIFEST_NAME = "manifest.jsonl"
MANIFEST_VERSION = 1


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
    class_counts: dict[int, int] = Field(default_factory=dict)
    writer: str
    seq: int = Field(ge=0)
    work_units: dict[str, int] = Field(default_factory=dict)
    units_done: list[str] = Field(default_factory=list)
    config_hash: str
    time: float

    def to_line(self) -> bytes:
        return (self.model_dump_json() + "\n").encode("utf-8")


def parse_line(line: bytes, where: str) -> ManifestRecord:
    """Parse one manifest line, raising ManifestError naming ``where``."""
    try:
        return ManifestRecord.model_validate_json(line)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "line"
        raise ManifestError(f"{where}: bad manifest line ({field}: {first['msg']})") from None


def read_complete_lines(path: Path, offset: int) -> tuple[list[bytes], int]:
    """Read whole lines from ``offset``; a trailing line without newline is not yet complete.

    Returns:
        The complete lines and the offset just past the last complete line.
    """
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], offset
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
        """Committed samples and completion per work unit (the resume state of generation)."""
        samples: Counter[str] = Counter()
        done: set[str] = set()
        for record in self.records():
            samples.update(record.work_units)
            done.update(record.units_done)
        return {
            unit: UnitProgress(samples=samples[unit], done=unit in done)
            for unit in samples.keys() | done
        }


class ManifestFollower:
    """Yields shard records of a growing manifest as they commit; its position can be saved."""

    def __init__(self, stream_dir: Path, offset: int = 0):
        self.manifest = Manifest(stream_dir)
        self.offset = offset

    def poll(self) -> list[ManifestRecord]:
        """Shard records committed since the last poll."""
        lines, self.offset = read_complete_lines(self.manifest.path, self.offset)
        records = [parse_line(line, str(self.manifest.path)) for line in lines]
        return [record for record in records if record.kind == "shard"]

    def follow(
        self,
        stop: Callable[[], bool],
        poll_interval_s: float = 1.0,
        idle_timeout_s: float | None = None,
    ) -> Iterator[ManifestRecord]:
        """Yield shard records as they commit until ``stop()`` is true or nothing new arrived
        for ``idle_timeout_s`` seconds. Records committed before ``stop()`` turned true are
        still yielded (one last poll)."""
        last_new = time.monotonic()
        while True:
            stopping = stop()
            records = self.poll()
            yield from records
            if records:
                last_new = time.monotonic()
            if stopping:
                return
            if idle_timeout_s is not None and time.monotonic() - last_new > idle_timeout_s:
                return
            time.sleep(poll_interval_s)

    def state_dict(self) -> dict[str, int]:
        return {"offset": self.offset}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.offset = int(state["offset"])
