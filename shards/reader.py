"""Reading committed data: shard lists from manifests, raw samples through webdataset.

Every reader gets its shard list from the manifest through one of two functions, which check each
manifest line against the files before anything reads them:

- ``committed_shards`` (every reader; a few system calls per shard, so it can be called often): the
  tar and its index are regular files in the stream directory (no symbolic link, device or FIFO)
  and the tar has the manifest's size. A damaged shard is an error.
- ``check_committed_shards`` (readers that start once: DALI's static and eval readers, inspect; and
  ``check_shard`` for the growing reader, once per shard): also parses the index, which must list
  the manifest's samples inside the tar, following the sample contract, with no key repeated across
  the stream, and the tar must start with its first member's header. Damaged shards are returned
  apart, so a reader can skip and count them. An index whose sha256 is its manifest line's
  ``index_sha256`` is the one the writer wrote and checked: only its keys are read (for the
  repeated-key check), not its every line again.

Only ``verify`` hashes and reads every member.

Samples come back as raw bytes; nothing here decodes, so no pickle is ever loaded from a shard.
Readers open files themselves and hand webdataset the open streams, never a name: webdataset's
``gopen`` reads ``pipe:...`` as a shell command and other schemes as URLs.
"""

import hashlib
import os
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, TypeVar

import webdataset
from webdataset.tariterators import group_by_keys, tar_file_expander

from shards.canonical_index import canonical_index_keys, written_index_keys
from shards.errors import SampleError, ShardError, StoreFileError
from shards.files import open_regular, read_regular
from shards.index import IndexMember, parse_index
from shards.manifest import MANIFEST_NAME, Manifest, ManifestRecord
from shards.names import index_file_name, is_shard_file_name
from shards.sample import check_fields, check_key

TAR_BLOCK_BYTES = 512
# An index line per sample is far shorter than the sample's tar members (a 512-byte header each).
MIN_INDEX_LIMIT_BYTES = 2**16


# Where a shard is: a Path in a directory store, an S3Url on object storage.
Location = TypeVar("Location")


@dataclass(frozen=True)
class DamagedShard:
    """A committed shard a reader must not read, and why (one line naming the file)."""

    path: Path
    record: ManifestRecord
    reason: str


def stream_dirs(root: Path) -> list[Path]:
    """The stream directories under ``root``: itself if it has a manifest, else its children that do.

    Raises:
        ShardError: if ``root`` is not a readable directory or holds no manifest.
    """
    root = Path(root)
    if not root.is_dir():
        raise ShardError(f"{root}: not a directory")
    try:
        if os.path.lexists(root / MANIFEST_NAME):
            return [root]
        found = sorted(child for child in root.iterdir() if os.path.lexists(child / MANIFEST_NAME))
    except OSError as error:
        raise ShardError(f"{root}: cannot list the store ({error.strerror})") from None
    if not found:
        raise ShardError(f"{root}: no {MANIFEST_NAME} here or in its subdirectories")
    return found


def _check_index(samples: list[list[IndexMember]], record: ManifestRecord, tar_bytes: int, where: Path) -> None:
    if len(samples) != record.samples:
        raise StoreFileError(where, f"lists {len(samples)} samples, the manifest says {record.samples}")
    allowed_fields: set[tuple[str, ...]] = set()  # samples of a stream share a few field sets: check each once
    for number, members in enumerate(samples, 2):
        key = members[0].key
        fields = tuple(member.extension for member in members)
        try:
            check_key(key)
            if fields not in allowed_fields:
                check_fields(key, list(fields))
                allowed_fields.add(fields)
        except SampleError as error:
            raise StoreFileError(where, f"line {number}: {error}") from None
        for member in members:
            if member.key != key:
                raise StoreFileError(where, f"line {number}: members of two keys ({key!r}, {member.key!r}) on one line")
            if member.offset < TAR_BLOCK_BYTES or member.offset + member.size > tar_bytes:
                raise StoreFileError(where, f"line {number}: member {member.name} lies outside the {tar_bytes}-byte tar")


def _check_first_header(block: bytes, samples: list[list[IndexMember]], path: Path) -> None:
    """The tar starts with the header of the index's first member (so it is an uncompressed tar)."""
    if not samples:
        return
    try:
        header = tarfile.TarInfo.frombuf(block, tarfile.ENCODING, "surrogateescape")
    except tarfile.HeaderError:
        raise StoreFileError(path, "does not start with a tar header (not a tar file, or compressed)") from None
    first = samples[0][0]
    if (header.name, header.size) != (first.name, first.size) or first.offset != TAR_BLOCK_BYTES:
        raise StoreFileError(path, f"first member is {header.name!r} ({header.size} bytes), its index says "
                                   f"{first.name!r} ({first.size} bytes) at byte {first.offset}")


def _open_committed_tar(path: Path, record: ManifestRecord) -> BinaryIO:
    """The shard's tar, open, once it is a regular file of the manifest's size."""
    handle = open_regular(path, "shard")
    size = os.fstat(handle.fileno()).st_size
    if size != record.bytes:
        handle.close()
        raise StoreFileError(path, f"shard is {size} bytes, the manifest says {record.bytes} "
                                   "(truncated or replaced; run genint shards verify)")
    return handle


def _open_committed(path: Path, record: ManifestRecord) -> BinaryIO:
    """The shard's tar, open, after the file checks of ``committed_shards``."""
    handle = _open_committed_tar(path, record)
    try:
        open_regular(path.with_name(index_file_name(path.name)), "DALI index").close()
    except BaseException:
        handle.close()
        raise
    return handle


def check_shard(path: Path, record: ManifestRecord) -> list[list[IndexMember]]:
    """All of the reader checks on one committed shard (see the module docstring).

    Args:
        path: the shard's tar, inside its stream directory.
        record: its manifest line.

    Returns:
        The shard's index, members grouped by sample.

    Raises:
        StoreFileError: naming the tar or index file and the problem.
    """
    return _checked_index(path, record, *_read_committed(path, record))


def _checked_keys(path: Path, record: ManifestRecord) -> list[str]:
    """The sample keys of a committed shard that passes ``check_shard``'s checks.

    A canonical index is checked in bulk (``shards.canonical_index``); any other, or one that fails
    there, line by line, which raises naming the line.
    """
    return index_keys(path, record, *_read_committed(path, record))


def index_keys(path: "Path | str", record: ManifestRecord, first_block: bytes, data: bytes, index_path: "Path | str") -> list[str]:
    """``_checked_keys`` on bytes already read: the tar's first block and the index's content
    (``shards.s3_reader`` reads them from object storage)."""
    keys = None
    if record.index_sha256 is not None and hashlib.sha256(data).hexdigest() == record.index_sha256:
        keys = written_index_keys(data, record.samples)
    if keys is None:
        keys = canonical_index_keys(data, record.samples, record.bytes)
    if keys is None:
        return [members[0].key for members in _checked_index(path, record, first_block, data, index_path)]
    if keys:
        extension, offset, size, name = data.decode("ascii").split("\n", 2)[1].split(" ", 4)[:4]
        _check_first_header(first_block, [[IndexMember(name, int(offset), int(size))]], path)
    return keys


def _checked_index(path: Path, record: ManifestRecord, first_block: bytes, data: bytes, index_path: Path) -> list[list[IndexMember]]:
    """The index's members grouped by sample, after the line-by-line checks."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise StoreFileError(index_path, "DALI index is not UTF-8 text") from None
    samples = parse_index(text, str(index_path))
    _check_index(samples, record, record.bytes, index_path)
    _check_first_header(first_block, samples, path)
    return samples


def _read_committed(path: Path, record: ManifestRecord) -> tuple[bytes, bytes, Path]:
    """The tar's first block, the index's bytes and the index's path, after the file checks."""
    with _open_committed_tar(path, record) as handle:
        first_block = handle.read(TAR_BLOCK_BYTES)
    index_path = path.with_name(index_file_name(path.name))
    return first_block, read_regular(index_path, "DALI index", max(record.bytes, MIN_INDEX_LIMIT_BYTES)), index_path


def check_committed_shards(stream_dir: Path) -> tuple[list[tuple[Path, ManifestRecord]], list[DamagedShard]]:
    """Every committed shard of a stream, in commit order, split into (readable, damaged).

    A shard is damaged when ``check_shard`` refuses it or it repeats a key of an earlier shard.

    Raises:
        ShardError: if the manifest itself cannot be read or has a bad line.
    """
    stream_dir = Path(stream_dir)
    return split_readable([(stream_dir / record.name, record) for record in Manifest(stream_dir).shards()], _checked_keys)


def split_readable(shards: list[tuple[Location, ManifestRecord]], keys_of: Callable[[Location, ManifestRecord], list[str]]
                   ) -> tuple[list[tuple[Location, ManifestRecord]], list[DamagedShard]]:
    """Committed shards (where each is, its manifest line) split into (readable, damaged), in order.

    ``keys_of`` gives a shard's sample keys or raises ShardError; a shard that repeats a key of an
    earlier one is damaged too. Shared by the directory and the object-storage checks.
    """
    readable, damaged = [], []
    seen: set[str] = set()
    kept: list[tuple[list[str], str]] = []  # each readable shard's keys and name, to name a repeat's first shard
    for location, record in shards:
        try:
            shard_keys = keys_of(location, record)
        except ShardError as error:
            damaged.append(DamagedShard(location, record, str(error)))
            continue
        before = len(seen)
        seen.update(shard_keys)
        if len(seen) != before + len(shard_keys):  # rare: find the repeat, then undo this shard's keys
            damaged.append(DamagedShard(location, record, _repeated_key(location, shard_keys, kept)))
            seen = {key for keys, _ in kept for key in keys}
            continue
        kept.append((shard_keys, record.name))
        readable.append((location, record))
    return readable, damaged


def _repeated_key(location: Any, shard_keys: list[str], kept: list[tuple[list[str], str]]) -> str:
    """Why a shard whose keys are not all new is damaged: the first repeated key and where it was."""
    owners = {key: name for keys, name in kept for key in keys}
    repeated = next((key for key in shard_keys if key in owners), None)
    if repeated is not None:
        return f"{location}: sample key {repeated!r} is also in {owners[repeated]}"
    twice = next(key for key, count in Counter(shard_keys).items() if count > 1)
    return f"{location}: sample key {twice!r} is listed twice"


def committed_shards(stream_dir: Path) -> list[tuple[Path, ManifestRecord]]:
    """(tar path, record) of every committed shard of a stream, in commit order.

    Raises:
        ShardError: naming the first shard whose files fail the checks (see the module docstring).
    """
    stream_dir = Path(stream_dir)
    shards = []
    for record in Manifest(stream_dir).shards():
        path = stream_dir / record.name
        _open_committed(path, record).close()
        shards.append((path, record))
    return shards


def _opened_shards(shard_paths: list[Path], handler: Callable[[Exception], bool]) -> Iterator[dict[str, Any]]:
    """webdataset's ``url_opener`` stage for store files: each shard opened here as a regular file."""
    for path in shard_paths:
        path = Path(path)
        try:
            if not is_shard_file_name(path.name):
                raise ShardError(f"{path}: not a shard file of the store (<stream>-<writer>-<seq>.tar)")
            stream = open_regular(path, "shard")
        except ShardError as error:
            if handler(error):
                continue
            break
        with stream:
            yield {"url": str(path), "stream": stream}


def iter_samples(
    shard_paths: list[Path],
    handler: Callable[[Exception], bool] = webdataset.reraise_exception,
) -> Iterator[dict[str, Any]]:
    """Raw samples (``__key__``, ``__url__`` and bytes per field) of the given shards, in order.

    Args:
        shard_paths: shard files (from ``committed_shards``); each is opened as a regular file.
        handler: webdataset's error policy (reraise by default).
    """
    files = tar_file_expander(_opened_shards(list(shard_paths), handler), handler=handler)
    return group_by_keys(files, handler=handler)


def iter_members(
    handle: IO[bytes], path: Path, max_member_bytes: int, select: Callable[[str], bool] = lambda name: True
) -> Iterator[tuple[tarfile.TarInfo, bytes]]:
    """(header, data) of each member of an open tar whose name ``select`` accepts, in archive order.

    A member is read only if it is a regular file whose declared size fits both in the file and in
    ``max_member_bytes`` (a header can declare a terabyte; reading it would exhaust memory).

    Raises:
        StoreFileError: naming ``path``: not a tar, a member that is not a regular file or too large.
    """
    file_bytes = os.fstat(handle.fileno()).st_size
    try:
        with tarfile.open(fileobj=handle, mode="r:") as archive:
            for member in archive:
                if not member.isreg():
                    raise StoreFileError(path, f"member {member.name!r} is not a regular file")
                if member.offset_data + member.size > file_bytes or member.size > max_member_bytes:
                    raise StoreFileError(path, f"member {member.name!r} declares {member.size} bytes, more than the "
                                               f"shard holds ({file_bytes} bytes, {max_member_bytes} per member at most)")
                if select(member.name):
                    yield member, archive.extractfile(member).read()
    except (tarfile.TarError, EOFError) as error:
        raise StoreFileError(path, f"unreadable tar ({error})") from None
