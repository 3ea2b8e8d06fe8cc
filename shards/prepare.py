"""``genint prepare``: an ImageFolder tree (one folder per class) into shuffled shards.

The file list is shuffled with a seed and cut into work units; rerunning after a crash skips
the units the manifest marks done and resumes a partly committed unit after its committed
samples, so the result has no duplicates and no gaps. Every image is fully decoded once:
unreadable files are skipped and listed in ``prepare-skipped.jsonl`` (a source with no readable
image at all is refused, and nothing is written). Every input is checked before the first write:
the stream name, the output (outside the source tree), the source listing and a previous plan.
"""

import hashlib
import io
import json
import multiprocessing
import os
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
from shards.locations import S3Url, StreamLocation, stream_location
from shards.names import check_name_part
from shards.sample import MAX_KEY_CHARS
from shards.stores import open_manifest, read_stream_file, write_stream_file
from shards.writer import ShardWriter

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"})
PLAN_FILE = "prepare.json"
CLASSES_FILE = "classes.json"
SKIPPED_FILE = "prepare-skipped.jsonl"
WRITER_ID = "prepare"
MAX_PLAN_BYTES = 2**20
# A line per unreadable source file: a few hundred bytes each.
MAX_SKIPPED_LOG_BYTES = 2**28
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


def _raise_unreadable(error: OSError) -> None:
    raise ShardError(f"{error.filename}: cannot read the source ({error.strerror})")


def _image_paths(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, sorted); a directory that cannot be listed is an error."""
    found = []
    for directory, _, names in os.walk(folder, onerror=_raise_unreadable):
        found += [Path(directory, name) for name in names if Path(name).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(path for path in found if path.is_file())


def plan_images(source: Path, seed: int) -> tuple[list[SourceImage], dict[str, int]]:
    """List the tree's images in a seeded shuffled order, with their class indices.

    Raises:
        ShardError: if ``source`` is not a readable directory, has no class folders or no images.
    """
    if not source.is_dir():
        raise ShardError(f"{source}: source is not a directory")
    try:
        folders = sorted(path.name for path in source.iterdir() if path.is_dir())
    except OSError as error:
        raise ShardError(f"{source}: cannot read the source ({error.strerror})") from None
    if not folders:
        raise ShardError(f"{source}: no class folders (expected one subdirectory per class)")
    classes = class_indices(folders)
    files = [(folder, path.relative_to(source).as_posix()) for folder in folders for path in _image_paths(source / folder)]
    if not files:
        raise ShardError(f"{source}: no image files in its class folders (suffixes: {', '.join(sorted(IMAGE_SUFFIXES))})")
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


def _check_plan(stream_dir: StreamLocation, plan: dict) -> None:
    """Refuse to resume into a stream that was prepared from a different source or seed (reads only)."""
    path = stream_dir / PLAN_FILE
    raw = read_stream_file(stream_dir, PLAN_FILE, "prepare plan", MAX_PLAN_BYTES)
    if raw is None:
        return
    try:
        previous = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise ShardError(f"{path}: corrupt prepare plan ({type(error).__name__}); it records the source and seed the "
                         "stream was prepared from: restore it, or prepare into a new output directory") from None
    if previous != plan:
        raise ShardError(
            f"{stream_dir}: already prepared with {str(previous)[:500]}, now asked for {plan}; "
            "use a new output directory or the same source and seed"
        )


def _check_output(source: Path, out: StreamLocation, stream_dir: StreamLocation) -> None:
    """The output is a directory (or can become one) outside the source tree, or a bucket that answers.

    Inside the source, the stream directory would be read as a class folder on the next run.
    """
    if isinstance(out, S3Url):
        from shards.storage import S3Store

        S3Store(out).check_bucket()
        return
    if out.exists() and not out.is_dir():
        raise ShardError(f"{out}: output is not a directory")
    if stream_dir.resolve().is_relative_to(source.resolve()):
        raise ShardError(f"{stream_dir}: the output is inside the source tree {source} (it would be read as "
                         "a class folder next time); prepare into a directory outside it")


class _StreamOutput:
    """What prepare writes into the stream directory (or ``s3://`` prefix), created at the first sample to commit.

    Until then skipped files and finished units wait in memory, so a source whose every image is
    unreadable leaves nothing behind. Once open: the plan (kept if present), the class list, the
    shard writer; the skipped-files log (what earlier runs logged, then this run's) is written
    whole at the end of every unit and at the end, as an object store has no append.
    """

    def __init__(self, stream_dir: StreamLocation, plan: dict, classes: dict[str, int], writer_args: tuple):
        self.stream_dir, self.plan, self.classes, self.writer_args = stream_dir, plan, classes, writer_args
        self.writer: ShardWriter | None = None
        self.skipped_log: bytes | None = None
        self.pending_skipped: list[dict[str, str]] = []
        self.pending_units: list[str] = []

    def open(self) -> None:
        if self.writer is not None:
            return
        try:
            if read_stream_file(self.stream_dir, PLAN_FILE, "prepare plan", MAX_PLAN_BYTES) is None:
                write_stream_file(self.stream_dir, PLAN_FILE, (json.dumps(self.plan, indent=1) + "\n").encode())
            write_stream_file(self.stream_dir, CLASSES_FILE, (json.dumps(self.classes, indent=1) + "\n").encode())
            self.writer = ShardWriter(self.stream_dir, *self.writer_args)
            self.skipped_log = read_stream_file(self.stream_dir, SKIPPED_FILE, "skipped-files log", MAX_SKIPPED_LOG_BYTES) or b""
        except OSError as error:
            raise ShardError(f"{error.filename or self.stream_dir}: cannot write the prepared stream ({error.strerror})") from None
        for unit in self.pending_units:
            self.writer.end_unit(unit)
        self.pending_units = []
        self._save_skipped()

    @property
    def pending(self) -> bool:
        return bool(self.pending_units or self.pending_skipped)

    def skip(self, entry: dict[str, str]) -> None:
        self.pending_skipped.append(entry)

    def _save_skipped(self) -> None:
        if self.skipped_log is None or not self.pending_skipped:
            return
        self.skipped_log += b"".join((json.dumps(entry) + "\n").encode() for entry in self.pending_skipped)
        write_stream_file(self.stream_dir, SKIPPED_FILE, self.skipped_log)
        self.pending_skipped = []

    def write(self, sample: dict, unit: str) -> None:
        self.open()
        self.writer.write(sample, unit=unit)

    def end_unit(self, unit: str) -> None:
        if self.writer is None:
            self.pending_units.append(unit)
        else:
            self.writer.end_unit(unit)
            self._save_skipped()

    def __enter__(self) -> "_StreamOutput":
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        self._save_skipped()
        if self.writer is not None:
            self.writer.__exit__(exc_type, exc_value, traceback)


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
    out: "Path | S3Url | str",
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
        out: store root, a directory or ``s3://BUCKET/PREFIX``; the stream lands in ``out/stream``.
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
    check_name_part(stream, "stream")
    source, out = Path(source), stream_location(out)
    stream_dir = out / stream
    _check_output(source, out, stream_dir)
    images, classes = plan_images(source, seed)
    listing_hash = hashlib.sha256("\n".join(image.relative_path for image in images).encode()).hexdigest()
    plan = {"source": str(source.resolve()), "seed": seed, "unit_size": unit_size, "files_sha256": listing_hash}
    _check_plan(stream_dir, plan)
    config_hash = config_hash or hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:16]
    units = [images[start : start + unit_size] for start in range(0, len(images), unit_size)]
    progress = open_manifest(stream_dir).unit_progress()
    written = already = handled = 0
    first_error = ""

    def advance(count: int) -> None:
        nonlocal handled
        handled += count
        if on_progress:
            on_progress(handled, len(images))

    writer_args = (stream, WRITER_ID, config_hash, max_samples, max_bytes)
    with _StreamOutput(stream_dir, plan, classes, writer_args) as output, _decoding_pool(workers) as pool:
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
                    first_error = first_error or f"{image.relative_path}: {result.error}"
                    output.skip({"path": image.relative_path, "error": result.error})
                    continue
                if to_skip:
                    to_skip -= 1
                    continue
                provenance = {"stream": stream, "source": image.relative_path, "class": image.class_index, "class_name": image.class_name}
                output.write({"__key__": image.key, result.extension: result.data, "cls": image.class_index, "json": provenance}, unit_id)
                written += 1
            output.end_unit(unit_id)
        if written + already == 0:
            raise ShardError(f"{source}: none of its {len(images)} image files could be read (first: {first_error[:300]}); "
                             f"nothing was committed to {stream_dir}")
        if output.pending:
            output.open()  # records the units finished without a new sample, and their skipped files
    return PrepareReport(written, already, read_skipped(stream_dir), len(units), classes)


def read_skipped(stream_dir: "StreamLocation | str") -> list[dict[str, str]]:
    """Files prepare could not read, once each (a resumed unit may list a file twice).

    Raises:
        ShardError: naming the log's line that is not a skipped-file record.
    """
    stream_dir = stream_location(stream_dir)
    path = stream_dir / SKIPPED_FILE
    unique = {}
    log = read_stream_file(stream_dir, SKIPPED_FILE, "skipped-files log", MAX_SKIPPED_LOG_BYTES) or b""
    for number, line in enumerate(log.splitlines(), 1):
        try:
            entry = json.loads(line)
            unique.setdefault(entry["path"], {"path": str(entry["path"]), "error": str(entry["error"])})
        except (ValueError, TypeError, KeyError):
            raise ShardError(f"{path}:{number}: not a skipped-file record ({{\"path\": ..., \"error\": ...}})") from None
    return list(unique.values())
