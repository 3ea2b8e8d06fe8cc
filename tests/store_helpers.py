"""Small shard stores written by the real writer, and the ways a hostile or careless user damages them."""

import hashlib
import json
import os
import tarfile
from pathlib import Path

import torch

from tests.conftest import write_stream
from trainers.models import build_model

STREAM = "original"
FIRST_SHARD = "original-w0-000000.tar"
SECOND_SHARD = "original-w0-000001.tar"


def make_store(root: Path, count: int = 6, max_samples: int = 3) -> Path:
    """``root/store/original`` with ``count`` samples in shards of ``max_samples``; returns the stream dir."""
    stream_dir = root / "store" / STREAM
    write_stream(stream_dir, count, max_samples=max_samples)
    return stream_dir


def manifest_lines(stream_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (stream_dir / "manifest.jsonl").read_text().splitlines()]


def write_manifest(stream_dir: Path, records: list[dict]) -> None:
    (stream_dir / "manifest.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))


def edit_line(stream_dir: Path, number: int, **changes) -> None:
    """Change fields of manifest line ``number`` (0-based); a value of None removes the field."""
    records = manifest_lines(stream_dir)
    for key, value in changes.items():
        if value is None:
            records[number].pop(key, None)
        else:
            records[number][key] = value
    write_manifest(stream_dir, records)


def plant_name(stream_dir: Path, name: str) -> None:
    """Make the first manifest line name ``name`` instead of its shard (every other field intact)."""
    edit_line(stream_dir, 0, name=name)


def replace_shard(stream_dir: Path, shard: str, make) -> None:
    """Remove ``shard`` and call ``make(path)`` to put something else at its path."""
    path = stream_dir / shard
    path.unlink()
    make(path)


def fifo(path: Path) -> None:
    os.mkfifo(path)


def truncate(path: Path, keep_bytes: int = 3000) -> None:
    path.write_bytes(path.read_bytes()[:keep_bytes])


def save_small_classifier(path: Path, num_classes: int = 3) -> Path:
    """A random-initialised small_cnn state_dict file, as ``genint eval`` loads it."""
    torch.manual_seed(0)
    torch.save(build_model("small_cnn", num_classes).state_dict(), path)
    return path


def index_members(stream_dir: Path, shard: str, sample: int) -> dict[str, tuple[int, int]]:
    """ext -> (data offset, size) of sample number ``sample`` of ``shard``, from its index."""
    parts = (stream_dir / shard.replace(".tar", ".idx")).read_text().splitlines()[1 + sample].split()
    return {parts[i]: (int(parts[i + 1]), int(parts[i + 2])) for i in range(0, len(parts), 4)}


def overwrite_member(stream_dir: Path, shard: str, sample: int, ext: str, make) -> None:
    """Replace a member's data in place with ``make(size)`` bytes of the same length (the tar's size stays)."""
    offset, size = index_members(stream_dir, shard, sample)[ext]
    data = make(size)
    assert len(data) == size
    with open(stream_dir / shard, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def plant_terabyte_member(stream_dir: Path) -> None:
    """Shard 0 becomes a tar whose first member header declares a terabyte (a few KB on disk), its
    manifest size and hash updated so only the member is wrong."""
    huge = tarfile.TarInfo("sample00000.jpg")
    huge.size = 2**40
    path = stream_dir / FIRST_SHARD
    path.write_bytes(huge.tobuf(format=tarfile.GNU_FORMAT) + b"\xff\xd8\xff" + bytes(10237))
    edit_line(stream_dir, 0, bytes=path.stat().st_size, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
