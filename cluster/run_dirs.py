"""Run directories: the only directories genint ever deletes.

A run directory is one genint created (or found empty) and marked with a small marker file. Before
deleting one, genint checks that it is still that: marked, not the working directory, the home
directory, ``/`` or an ancestor of either, and holding only entries of the layout the caller
writes. Anything else is refused in one line, so a mistyped ``output_dir`` never costs a user's files.
"""

import fnmatch
import json
import os
import shutil
import time
from pathlib import Path

from cluster.errors import ClusterError, ConfigError

MARKER_FILE = ".genint-run"
_MARKER_TEXT = "genint run directory: genint may delete this directory (e.g. `genint experiment --fresh`)"


def _has_marker(directory: Path) -> bool:
    marker = directory / MARKER_FILE
    # A link could make a user's directory look marked; only a plain file counts.
    return marker.is_file() and not marker.is_symlink()


def check_output_dir(directory: Path, what: str = "output_dir") -> None:
    """Fail now, having written nothing, when ``directory`` cannot become a directory genint writes in.

    Raises:
        ConfigError: it, or the nearest part of its path that exists, is a file, or that part is not writable.
    """
    directory = Path(directory)
    existing = next(path for path in (directory, *directory.parents) if path.exists())
    if not existing.is_dir():
        where = "" if existing == directory else f" ({existing} is)"
        raise ConfigError(f"{what} {directory}: is a file, not a directory{where}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {directory}: {existing} is not writable")


def claim_run_dir(directory: Path, what: str = "output_dir") -> Path:
    """Create ``directory`` as a genint run directory, or accept one genint marked before.

    Args:
        directory: the run directory (parents are created).
        what: how errors name it, e.g. the config key.
    Returns:
        The directory.
    Raises:
        ConfigError: it is a file or not writable (``check_output_dir``).
        ClusterError: an existing directory with files but no marker (a directory genint did not
        create: reusing it would later let genint delete them).
    """
    directory = Path(directory)
    check_output_dir(directory, what)
    if directory.is_dir() and not _has_marker(directory):
        entries = sorted(entry.name for entry in directory.iterdir())
        if entries:
            raise ClusterError(f"{what} {directory}: holds files genint did not write (e.g. {entries[0]!r}); "
                               "use a new or empty directory")
    directory.mkdir(parents=True, exist_ok=True)
    if not _has_marker(directory):
        record = {"genint": _MARKER_TEXT, "created": time.time(), "pid": os.getpid()}
        (directory / MARKER_FILE).write_text(json.dumps(record) + "\n")
    return directory


def _protected(directory: Path) -> Path | None:
    """The working or home directory (or ``/``) that ``directory`` is, or holds; None if neither."""
    for protected in (Path.cwd().resolve(), Path.home().resolve()):
        if directory == protected or directory in protected.parents:
            return protected
    return None


def foreign_entries(directory: Path, layout: tuple[str, ...]) -> list[str]:
    """Top-level entries of ``directory`` that match none of the ``layout`` glob patterns (nor the marker)."""
    return sorted(entry.name for entry in Path(directory).iterdir()
                  if entry.name != MARKER_FILE and not any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in layout))


def remove_run_dir(directory: Path, layout: tuple[str, ...], what: str = "output_dir") -> None:
    """Delete a run directory that ``claim_run_dir`` made, after checking it still is one.

    Args:
        directory: the run directory; a missing one is nothing to do.
        layout: glob patterns of every top-level entry the caller writes there.
        what: how errors name it.
    Raises:
        ClusterError: naming why it is not deleted; nothing is deleted then.
    """
    directory = Path(directory)
    if not directory.exists() and not directory.is_symlink():
        return
    if directory.is_symlink() or not directory.is_dir():
        raise ClusterError(f"{what} {directory}: not deleted: not a directory genint created")
    resolved = directory.resolve()
    protected = _protected(resolved)
    if protected is not None:
        kind = "the working directory" if protected == Path.cwd().resolve() else "the home directory"
        relation = "is" if resolved == protected else "holds"
        raise ClusterError(f"{what} {directory}: not deleted: it {relation} {kind} ({protected})")
    if not _has_marker(resolved):
        raise ClusterError(f"{what} {directory}: not deleted: genint did not create it (no {MARKER_FILE} marker)")
    foreign = foreign_entries(resolved, layout)
    if foreign:
        raise ClusterError(f"{what} {directory}: not deleted: it holds files genint did not write ({', '.join(foreign[:3])})")
    shutil.rmtree(resolved)
