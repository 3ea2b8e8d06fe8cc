"""A checkpoint directory on disk as genint writes it, and the checks made before anything in it is read.

Layout: ``<dir>/step_<9 digits>/`` holds DeepSpeed's files of one checkpoint and ``genint-checkpoint.json``,
the record of every file's size and sha256 written once they are all complete; ``<dir>/latest`` names the
newest complete step and is written after its record. A reader resolves ``latest`` to a step directory
inside ``<dir>`` and checks the record against the files before it unpickles one byte of them, so a
checkpoint genint did not write (or one changed since) is refused, never loaded.
"""

import hashlib
import json
import os
import re
import shutil
import stat
from pathlib import Path

from shards.errors import StoreFileError
from shards.files import open_regular, read_regular, write_durably
from trainers.errors import TrainError

TAG_PREFIX = "step_"
_TAG = re.compile(rf"{TAG_PREFIX}[0-9]{{9}}")
RECORD_NAME = "genint-checkpoint.json"
LATEST_NAME = "latest"
# DeepSpeed's file of the full weights (ZeRO 0 and 1) and the client state.
MODEL_STATES_NAME = "mp_rank_00_model_states.pt"
RECORD_FORMAT = 1
_MAX_LATEST_BYTES = 4096
_MAX_RECORD_BYTES = 1 << 20


def tag_name(step: int) -> str:
    """The step directory's name for ``step`` (``step_000000042``)."""
    return f"{TAG_PREFIX}{step:09d}"


def _sha256(path: Path) -> str:
    with _opened(path, "checkpoint file") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _opened(path: Path, what: str):
    """``path`` opened if it is a regular file (no link, device or FIFO), else a one-line TrainError."""
    try:
        return open_regular(path, what)
    except StoreFileError as error:
        raise TrainError(f"checkpoint {error}") from None


def _entries(tag_dir: Path) -> dict[str, os.stat_result]:
    """Every entry of a step directory but the record, by name (links not followed)."""
    try:
        with os.scandir(tag_dir) as entries:
            return {entry.name: entry.stat(follow_symlinks=False) for entry in entries if entry.name != RECORD_NAME}
    except OSError as error:
        raise TrainError(f"checkpoint {tag_dir}: cannot list it ({error.strerror or type(error).__name__})") from None


def write_record(tag_dir: Path) -> None:
    """Record the size and sha256 of every file in ``tag_dir`` (call once all ranks wrote theirs)."""
    files = {name: {"bytes": info.st_size, "sha256": _sha256(tag_dir / name)} for name, info in sorted(_entries(tag_dir).items())}
    record = {"format": RECORD_FORMAT, "files": files}
    write_durably(tag_dir / RECORD_NAME, json.dumps(record, indent=1).encode())


def write_latest(directory: Path, tag: str) -> None:
    """Point ``latest`` at ``tag`` (atomically: a reader sees the old or the new step, never half)."""
    write_durably(directory / LATEST_NAME, tag.encode())


def _is_real_directory(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


def genint_tags(directory: Path) -> list[Path]:
    """The step directories genint wrote in ``directory`` (named like its steps, holding a record), oldest first."""
    if not _is_real_directory(directory):
        return []
    return sorted(
        path for path in directory.iterdir()
        if _TAG.fullmatch(path.name) and _is_real_directory(path) and (path / RECORD_NAME).is_file()
    )


def remove_tags(tags: list[Path]) -> None:
    """Delete step directories that ``genint_tags`` listed (never anything else)."""
    for tag_dir in tags:
        shutil.rmtree(tag_dir)


def remove_checkpoints(directory: Path) -> None:
    """Delete every checkpoint genint wrote in ``directory`` and its ``latest``; leave anything else."""
    remove_tags(genint_tags(directory))
    latest = directory / LATEST_NAME
    if latest.is_file() and not latest.is_symlink():
        latest.unlink()


def latest_tag_dir(directory: Path) -> Path | None:
    """The step directory ``directory/latest`` names; None when there is no ``latest``.

    Raises:
        TrainError: ``latest`` is not a regular file, names something other than a step of genint's
            (a path, ``..``), or its step directory is missing or not a directory inside ``directory``.
    """
    latest = directory / LATEST_NAME
    if not os.path.lexists(latest):
        return None
    try:
        text = read_regular(latest, "'latest' file", _MAX_LATEST_BYTES)
    except StoreFileError as error:
        raise TrainError(f"checkpoint {error}") from None
    tag = text.decode("ascii", errors="replace").strip()
    if not _TAG.fullmatch(tag):
        shown = tag if len(tag) <= 40 else tag[:40] + "..."
        raise TrainError(f"checkpoint {latest}: names {shown!r}, not a step directory genint writes ({TAG_PREFIX}<9 digits>)")
    tag_dir = directory / tag
    if not _is_real_directory(tag_dir):
        what = "is missing" if not os.path.lexists(tag_dir) else "is not a directory inside it"
        raise TrainError(f"checkpoint {latest}: names {tag}, which {what}")
    return tag_dir


def _read_record(tag_dir: Path) -> dict[str, dict]:
    path = tag_dir / RECORD_NAME
    if not os.path.lexists(path):
        raise TrainError(
            f"checkpoint {tag_dir}: no {RECORD_NAME}, so genint did not write it (or was killed while writing it); "
            "refusing to load it"
        )
    try:
        record = json.loads(read_regular(path, "checkpoint record", _MAX_RECORD_BYTES))
    except StoreFileError as error:
        raise TrainError(f"checkpoint {error}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TrainError(f"checkpoint {path}: not a genint checkpoint record ({error})") from None
    files = record.get("files") if isinstance(record, dict) and record.get("format") == RECORD_FORMAT else None
    valid = isinstance(files, dict) and all(
        isinstance(entry, dict) and isinstance(entry.get("bytes"), int) and isinstance(entry.get("sha256"), str)
        for entry in files.values()
    )
    if not valid:
        raise TrainError(f"checkpoint {path}: not a genint checkpoint record (format {RECORD_FORMAT} with files: name -> bytes, sha256)")
    return files


def verify_tag(tag_dir: Path) -> None:
    """Check every file of a step directory against its record, before any of them is loaded.

    Raises:
        TrainError: naming the file: no record, a file missing, added, not a regular file, or whose
            size or sha256 differs from what genint recorded when it wrote the checkpoint.
    """
    recorded = _read_record(tag_dir)
    present = _entries(tag_dir)
    for name, info in sorted(present.items()):
        if not stat.S_ISREG(info.st_mode):
            raise TrainError(f"checkpoint {tag_dir / name}: not a regular file (genint writes only regular files)")
        if name not in recorded:
            raise TrainError(f"checkpoint {tag_dir / name}: not in {RECORD_NAME} (a file genint did not write)")
    for name, entry in sorted(recorded.items()):
        path = tag_dir / name
        if name not in present:
            raise TrainError(f"checkpoint {path}: missing (listed in {RECORD_NAME})")
        if present[name].st_size != entry["bytes"]:
            raise TrainError(f"checkpoint {path}: {present[name].st_size} bytes, {RECORD_NAME} says {entry['bytes']}")
        if _sha256(path) != entry["sha256"]:
            raise TrainError(f"checkpoint {path}: its sha256 differs from {RECORD_NAME} (changed since genint wrote it)")


def checked_tag_dir(path: Path) -> Path:
    """The verified step directory of ``path``: a checkpoints directory whose ``latest`` names one,
    or a step directory itself.

    Raises:
        TrainError: neither, or a check of ``latest_tag_dir`` or ``verify_tag`` failed.
    """
    tag_dir = latest_tag_dir(path)
    if tag_dir is None:
        if not any(os.path.lexists(path / name) for name in (RECORD_NAME, MODEL_STATES_NAME)):
            raise TrainError(f"checkpoint {path}: neither a checkpoint step nor a directory with a 'latest' file")
        tag_dir = path
    verify_tag(tag_dir)
    return tag_dir
