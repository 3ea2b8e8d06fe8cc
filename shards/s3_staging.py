"""Local copies of an ``s3://`` stream's committed shards, for DALI to read from local disk.

DALI 2.4's webdataset reader opens ``s3://`` tars itself but fetches per sample: about 0.01 of
local disk against SeaweedFS on loopback (bench/dali_s3_read.py). So the static readers (training
and evaluation) read a bucket's stream from copies: every committed shard's tar and DALI index,
downloaded whole, several at once (``PARALLEL_REQUESTS``), into ``genint-scratch/streams/<digest of the stream URL>`` under
the system temp directory (``TMPDIR``) of each node.

A copy's name carries the sha256 its manifest line commits, so a copy already there (a restart,
another job reading the same stream) is not downloaded again, and a shard committed anew under the
same name gets a fresh one. Copies appear whole (written beside, then renamed) and are never
changed; genint does not remove them either: delete the directory to free the space. One lock file
serialises a node's ranks, so the first downloads and the others find the copies. The copies are
checked by ``shards.s3_reader`` exactly as the objects would be, its messages naming the objects.
"""

import fcntl
import hashlib
import os
import tempfile
from pathlib import Path

from shards.manifest import ManifestRecord
from shards.names import index_file_name
from shards.storage import S3Store, S3Url

_WHOLE_GET_BYTES = 8 * 2**20  # below boto3's multipart threshold one GET is cheaper than download_file's HEAD + GET


def staging_dir(stream_url: S3Url) -> Path:
    """This node's directory of copies of ``stream_url``'s shards."""
    digest = hashlib.sha256(str(stream_url).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "genint-scratch" / "streams" / digest


def copy_name(record: ManifestRecord) -> str:
    """The local tar name of a committed shard's copy (its index: ``index_file_name`` of it)."""
    stem = record.name.removesuffix(".tar")
    return f"{stem}-{record.sha256[:16]}.tar" if record.sha256 else record.name


def stage_shards(store: S3Store, records: list[ManifestRecord], sizes: dict[str, int]) -> dict[str, Path]:
    """Copy each committed shard whose tar and index the listing ``sizes`` shows (tar at its committed size).

    Returns:
        shard name -> the local tar copy, for the shards copied; the others are left to the reader checks.

    Raises:
        StorageError: an object listed but unreadable (the request failed or it vanished meanwhile).
    """
    directory = staging_dir(store.url)
    directory.mkdir(parents=True, exist_ok=True)
    wanted = [record for record in records if sizes.get(record.name) == record.bytes and index_file_name(record.name) in sizes]
    copies = {record.name: directory / copy_name(record) for record in wanted}
    objects = [(name, copy) for record in wanted for name, copy in (
        (record.name, copies[record.name]), (index_file_name(record.name), directory / index_file_name(copy_name(record))))]
    with open(directory / ".genint-staging.lock", "w") as lock:
        # A node's ranks stage one stream together: the first downloads, the others wait here and find the copies.
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = [(name, copy) for name, copy in objects if not (copy.exists() and copy.stat().st_size == sizes[name])]
        store.map(lambda item: _download(store, item[0], item[1], sizes[item[0]]), missing)
    return copies


def _download(store: S3Store, name: str, copy: Path, size: int) -> None:
    what = "DALI index" if name.endswith(".idx") else "shard"
    if size >= _WHOLE_GET_BYTES:
        store.download(name, copy, what)  # boto3 writes beside and renames
        return
    data = store.get(name, what, max_bytes=size)
    temporary = copy.with_name(f".{copy.name}.{os.getpid()}.part")
    temporary.write_bytes(data)
    os.replace(temporary, copy)
