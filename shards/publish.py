"""Where a writer's closed shards go: renamed into a local stream directory, or uploaded to a bucket.

Both publishers make the tar and its DALI index whole and durable under their final names before
the writer commits the manifest record, and both remove what a crashed writer of the same id left
uncommitted (only names of the store's own pattern with that writer's id: nothing else is touched).
On object storage the tar is spooled in a local temp directory and uploaded whole; a crash leaves
at most that spool file in the system temp directory (on a pod, its ephemeral disk) and whole
objects that no segment names, which the next start of that writer deletes.
"""

import fcntl
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO

from shards.errors import ShardError
from shards.files import TEMP_SUFFIX, write_durably
from shards.manifest import Manifest
from shards.segments import SegmentManifest
from shards.storage import S3Store, S3Url


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class LocalPublisher:
    """Shards in a local stream directory: fsync, rename, index written durably, directory fsynced."""

    def __init__(self, stream_dir: Path):
        self.stream_dir = stream_dir
        self.spool_dir = stream_dir
        self.manifest = Manifest(stream_dir)
        stream_dir.mkdir(parents=True, exist_ok=True)
        self._lock: BinaryIO | None = None

    def lock(self, stream: str, writer_id: str) -> None:
        """Hold this writer id (a ``flock`` on a lock file) until ``close``."""
        lock = open(self.stream_dir / f".{stream}-{writer_id}.lock", "wb")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ShardError(f"writer id {writer_id!r} is already in use in {self.stream_dir}; "
                             "give each concurrent writer its own id") from None
        self._lock = lock

    def remove_uncommitted(self, prefix: str, committed: set[str]) -> None:
        for path in self.stream_dir.glob(prefix + "*"):
            stem = path.name.split(".", 1)[0]
            if stem not in committed or path.name.endswith(TEMP_SUFFIX):
                path.unlink()

    def publish(self, temp_path: Path, raw: BinaryIO, tar_name: str, index: bytes) -> tuple[str, int]:
        """Make the closed temp tar durable as ``tar_name`` with its index; return (sha256, bytes)."""
        os.fsync(raw.fileno())
        raw.close()
        sha256, size = _sha256(temp_path), temp_path.stat().st_size
        tar_path = self.stream_dir / tar_name
        os.replace(temp_path, tar_path)
        write_durably(tar_path.with_suffix(".idx"), index)
        _fsync_directory(self.stream_dir)
        return sha256, size

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()


class S3Publisher:
    """Shards under an ``s3://`` stream prefix: spooled locally, the tar then its index uploaded whole.

    No lock object is taken (an object store has none that a crashed writer would release); two
    live writers with one id are refused at the first commit, by the segment's conditional put. So
    unlike a directory's lock this does not keep a second live writer of that id from starting,
    and its start removes the first one's uploaded but uncommitted shard: one job per stream
    prefix (a job refuses an output_dir holding another job: ``cluster.config``).
    """

    def __init__(self, stream_url: S3Url):
        self.stream_dir = stream_url
        self.store = S3Store(stream_url)
        self.store.check_bucket()
        self.manifest = SegmentManifest(stream_url)
        self.spool_dir = Path(tempfile.mkdtemp(prefix="genint-spool-"))

    def lock(self, stream: str, writer_id: str) -> None:
        """Nothing to hold: see the class docstring."""

    def remove_uncommitted(self, prefix: str, committed: set[str]) -> None:
        for key, _ in list(self.store.list(prefix)):
            if "/" not in key and key.split(".", 1)[0] not in committed:
                self.store.delete(key)

    def publish(self, temp_path: Path, raw: BinaryIO, tar_name: str, index: bytes) -> tuple[str, int]:
        """Upload the closed temp tar as ``tar_name``, then its index; return (sha256, bytes)."""
        raw.close()
        sha256, size = _sha256(temp_path), temp_path.stat().st_size
        try:
            self.store.upload(temp_path, tar_name)
            self.store.put(tar_name.removesuffix(".tar") + ".idx", index)
        finally:
            temp_path.unlink(missing_ok=True)
        return sha256, size

    def close(self) -> None:
        shutil.rmtree(self.spool_dir, ignore_errors=True)  # genint's own temp directory
