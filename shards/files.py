"""The store's own files on disk: read only when they are regular files, written durably.

Every name a reader opens comes from a manifest or a store directory someone else may have
written, so opening follows no symbolic link (``O_NOFOLLOW``) and never waits (``O_NONBLOCK``: a
FIFO would block ``open`` until a writer appears); what is opened must be a regular file, checked
on the open descriptor so nothing can be swapped in between the check and the read. A device such
as ``/dev/zero`` would otherwise feed ``read`` or a hash forever.
"""

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from shards.errors import StoreFileError

TEMP_SUFFIX = ".tmp"
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _not_regular(path: Path, what: str, mode: int) -> StoreFileError:
    return StoreFileError(path, f"{what} is {_kind(mode)}, not a regular file (the store holds only regular files)")


def open_regular(path: Path, what: str) -> BinaryIO:
    """Open ``path`` for reading if it is a regular file (not a link, device, FIFO or socket).

    Args:
        path: the file.
        what: what it is, for messages (``"shard"``, ``"manifest"``, ``"DALI index"``).

    Returns:
        The open binary file.

    Raises:
        StoreFileError: naming the path: missing, not a regular file, or unreadable (with the OS's reason).
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise StoreFileError(path, f"{what} is missing") from None
    except OSError as error:
        # ELOOP: the last component is a symbolic link; ENXIO: a socket. Say what the entry is.
        if error.errno in (errno.ELOOP, errno.ENXIO):
            raise _not_regular(path, what, os.lstat(path).st_mode) from None
        raise StoreFileError(path, f"{what} cannot be opened ({error.strerror})") from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        raise _not_regular(path, what, mode)
    return os.fdopen(descriptor, "rb")


def read_regular(path: Path, what: str, max_bytes: int) -> bytes:
    """The whole content of the regular file ``path``, refusing one larger than ``max_bytes``.

    Raises:
        StoreFileError: as ``open_regular``, or when the file is larger than ``max_bytes`` or unreadable.
    """
    with open_regular(path, what) as handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as error:
            raise StoreFileError(path, f"{what} cannot be read ({error.strerror})") from None
    if len(data) > max_bytes:
        raise StoreFileError(path, f"{what} is larger than {max_bytes} bytes")
    return data


def write_durably_with(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Replace ``path`` atomically with what ``write`` writes: a temp file, fsynced, renamed over it.

    A reader sees the old file or the whole new one, never a part; a failure leaves neither a
    changed ``path`` nor the temp file.

    Args:
        path: the file to replace (its directory must exist).
        write: writes the content to the open binary temp file (``np.savez``, ``torch.save``, ...).
    """
    temp = path.with_name(path.name + TEMP_SUFFIX)
    try:
        with open(temp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_durably(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (see ``write_durably_with``)."""
    write_durably_with(path, lambda handle: handle.write(data))
