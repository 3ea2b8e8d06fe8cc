"""``genint prepare``: an ImageFolder tree (one folder per class) into shuffled shards.

The file list is shuffled with a seed and cut into work units; rerunning after a crash skips
the units the manifest marks done and resumes a partly committed unit after its committed
samples, so the result has no duplicates and no gaps. Every image is fully decoded once:
unreadable files are skipped and listed in ``prepare-skipped.jsonl``, never fatal.
"""

import hashlib
import io
import json
import multiprocessing
import random
import re
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from shards.classes import class_indices
from shards.errors import ShardError
from shards.manifest import Manifest
from shards.sample import MAX_KEY_CHARS
from shards.writer import ShardWriter

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"})
PLAN_FILE = "prepare.json"
CLASSES_FILE = "classes.json"
SKIPPED_FILE = "prepare-skipped.jsonl"
WRITER_ID = "prepare"
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class SourceImage:
    """One file of the source tree and the sample it becomes."""

    relative_path: str
    class_name: str
    class_index: int
    key: str


@dataclass(frozen=True)
class LoadedImage:
    """An image ready for a shard, or the reason it could not be read."""

    extension: str = ""
    data: bytes = b""
    error: str = ""


@dataclass
class PrepareReport:
    """What a prepare run did."""

    written: int
    already_committed: int
    skipped: list[dict[str, str]]
    units: int
    classes: dict[str, int]


def _sample_key(relative_path: str, taken: set[str]) -> str:
    """A contract-safe key from a path; hashed when too long or when sanitizing collides."""
    key = _KEY_UNSAFE.sub("_", relative_path)
    if len(key) > MAX_KEY_CHARS or key in taken:
        digest = hashlib.sha1(relative_path.encode()).hexdigest()[:12]
        key = f"{key[: MAX_KEY_CHARS - 13]}_{digest}"
    if key in taken:
        raise ShardError(f"cannot make a unique sample key for {relative_path!r}")
    taken.add(key)
    return key


def plan_images(source: Path, seed: int) -> tuple[list[SourceImage], dict[str, int]]:
    """List the tree's images in a seeded shuffled order, with their class indices."""
    if not source.is_dir():
        raise ShardError(f"{source}: source is not a directory")
    folders = sorted(path.name for path in source.iterdir() if path.is_dir())
    if not folders:
        raise ShardError(f"{source}: no class folders (expected one subdirectory per class)")
    classes = class_indices(folders)
    files = [
        (folder, path.relative_to(source).as_posix())
        for folder in folders
        for path in sorted((source / folder).rglob("*"))
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    ]
    random.Random(seed).shuffle(files)
    taken: set[str] = set()
    images = [SourceImage(relative, folder, classes[folder], _sample_key(relative, taken)) for folder, relative in files]
    return images, classes


def load_image(path: Path) -> LoadedImage:
    """Decode ``path`` fully; keep JPEG/PNG bytes as they are, re-encode others as PNG."""
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.format == "JPEG":
                return LoadedImage("jpg", data)
            if image.format == "PNG":
                return LoadedImage("png", data)
            encoded = io.BytesIO()
            image.save(encoded, format="PNG")
            return LoadedImage("png", encoded.getvalue())
    except Exception as error:  # PIL raises many types for bad files; each one means "skip".
        return LoadedImage(error=f"{type(error).__name__}: {error}")


def _check_plan(stream_dir: Path, plan: dict) -> None:
    """Refuse to resume into a stream that was prepared from a different source or seed."""
    path = stream_dir / PLAN_FILE
    if path.exists():
        previous = json.loads(path.read_text())
        if previous != plan:
            raise ShardError(
                f"{stream_dir}: already prepared with {previous}, now asked for {plan}; "
                "use a new output directory or the same source and seed"
            )
    else:
        stream_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(plan, indent=1) + "\n")


def _decoding_pool(workers: int) -> ProcessPoolExecutor | nullcontext:
    """Processes decoding images, or nothing (decode inline) for one worker.

    forkserver, not fork: the pool starts its processes lazily, after the shard writer's
    committer thread is running, and forking a process with a running thread can deadlock.
    """
    if workers <= 1:
        return nullcontext()
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("forkserver"))


def prepare_imagefolder(
    source: Path,
    out: Path,
    stream: str,
    seed: int = 0,
    unit_size: int = 1000,
    max_samples: int = 1000,
    max_bytes: int = 256 * 2**20,
    config_hash: str = "",
    workers: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
) -> PrepareReport:
    """Write ``source`` (ImageFolder) as stream ``stream`` under ``out``; resumable.

    Args:
        source: directory with one subdirectory per class.
        out: store root; the stream lands in ``out/stream``.
        stream: stream name, e.g. ``original``.
        seed: shuffle seed (part of the plan: a rerun must use the same one).
        unit_size: images per work unit (the resume granularity).
        max_samples, max_bytes: shard rolling limits.
        config_hash: recorded in each manifest line; defaults to a hash of the plan.
        workers: processes decoding images.
        on_progress: called as ``on_progress(files_handled, files_total)`` as work advances.

    Returns:
        A PrepareReport.
    """
    source, stream_dir = Path(source), Path(out) / stream
    images, classes = plan_images(source, seed)
    listing_hash = hashlib.sha256("\n".join(image.relative_path for image in images).encode()).hexdigest()
    plan = {"source": str(source.resolve()), "seed": seed, "unit_size": unit_size, "files_sha256": listing_hash}
    _check_plan(stream_dir, plan)
    (stream_dir / CLASSES_FILE).write_text(json.dumps(classes, indent=1) + "\n")
    config_hash = config_hash or hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:16]
    units = [images[start : start + unit_size] for start in range(0, len(images), unit_size)]
    progress = Manifest(stream_dir).unit_progress()
    written = already = handled = 0

    def advance(count: int) -> None:
        nonlocal handled
        handled += count
        if on_progress:
            on_progress(handled, len(images))

    with (
        ShardWriter(stream_dir, stream, WRITER_ID, config_hash, max_samples, max_bytes) as writer,
        open(stream_dir / SKIPPED_FILE, "a") as skipped_log,
        _decoding_pool(workers) as pool,
    ):
        for number, unit in enumerate(units):
            unit_id = f"unit{number:06d}"
            state = progress.get(unit_id)
            if state is not None and state.done:
                already += state.samples
                advance(len(unit))
                continue
            to_skip = state.samples if state else 0
            already += to_skip
            paths = [source / image.relative_path for image in unit]
            loaded = pool.map(load_image, paths, chunksize=8) if pool else map(load_image, paths)
            for image, result in zip(unit, loaded):
                advance(1)
                if result.error:
                    skipped_log.write(json.dumps({"path": image.relative_path, "error": result.error}) + "\n")
                    continue
                if to_skip:
                    to_skip -= 1
                    continue
                provenance = {"stream": stream, "source": image.relative_path, "class": image.class_index, "class_name": image.class_name}
                writer.write({"__key__": image.key, result.extension: result.data, "cls": image.class_index, "json": provenance}, unit=unit_id)
                written += 1
            writer.end_unit(unit_id)
    return PrepareReport(written, already, read_skipped(stream_dir), len(units), classes)


def read_skipped(stream_dir: Path) -> list[dict[str, str]]:
    """Files prepare could not read, once each (a resumed unit may list a file twice)."""
    path = Path(stream_dir) / SKIPPED_FILE
    if not path.exists():
        return []
    unique = {}
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        unique.setdefault(entry["path"], entry)
    return list(unique.values())
