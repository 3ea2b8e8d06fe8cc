"""The store's names: streams, writer ids and shard files. One place knows the patterns.

A stream name becomes a directory under the store root and a shard name a file in it, so both
are checked before anything is written or opened: no ``/``, ``:``, ``..`` or anything else that
could leave the store or reach a URL scheme (webdataset reads ``pipe:...`` as a shell command).
"""

import re

from shards.errors import ShardError

NAME_PART_PATTERN = r"[A-Za-z0-9_]+"
STREAM_NAME_PATTERN = rf"^{NAME_PART_PATTERN}$"
SEQ_DIGITS = 6
_NAME_PART = re.compile(NAME_PART_PATTERN)
_SHARD_FILE = re.compile(rf"({NAME_PART_PATTERN})-({NAME_PART_PATTERN})-(\d{{{SEQ_DIGITS},}})\.tar")
MAX_NAME_CHARS = 100


def is_name_part(value: object) -> bool:
    """True if ``value`` is a valid stream name or writer id."""
    return isinstance(value, str) and len(value) <= MAX_NAME_CHARS and _NAME_PART.fullmatch(value) is not None


def check_name_part(value: object, what: str) -> str:
    """Return ``value`` if it is a valid stream name or writer id, else raise ShardError.

    Args:
        value: the name.
        what: how the error names it, e.g. ``"stream"``, ``"--stream"`` or ``"writer id"``.
    """
    if not is_name_part(value):
        raise ShardError(f"{what} {str(value)[:MAX_NAME_CHARS]!r} is invalid: use 1-{MAX_NAME_CHARS} characters "
                         "from [A-Za-z0-9_] (it becomes part of a path inside the store)")
    return value


def shard_name(stream: str, writer_id: str, seq: int) -> str:
    """File stem of a shard: ``<stream>-<writer>-<seq>``."""
    return f"{stream}-{writer_id}-{seq:0{SEQ_DIGITS}d}"


def shard_file_parts(name: object) -> tuple[str, str, int] | None:
    """(stream, writer id, seq) of a shard file name the store writes, or None if ``name`` is not one."""
    if not isinstance(name, str) or len(name) > 3 * MAX_NAME_CHARS:
        return None
    match = _SHARD_FILE.fullmatch(name)
    if match is None or not (is_name_part(match[1]) and is_name_part(match[2])):
        return None
    return match[1], match[2], int(match[3])


def is_shard_file_name(name: object) -> bool:
    """True if ``name`` is a shard file name the store itself writes (``<stream>-<writer>-<seq>.tar``)."""
    return shard_file_parts(name) is not None


def index_file_name(shard_file: str) -> str:
    """The DALI index file that belongs to a shard file (``<stem>.idx``)."""
    return shard_file.removesuffix(".tar") + ".idx"
