"""Which backend a stream lives on: a local directory (the default) or an ``s3://`` prefix.

Every caller that is handed a store root or stream directory from config goes through these
functions, so the rest of the code never tests the URL scheme itself.
"""

from pathlib import Path

from shards import reader
from shards.files import read_regular, write_durably
from shards.locations import MissingObjectError, S3Url, StreamLocation, stream_location
from shards.manifest import Manifest, ManifestFollower, ManifestRecord, UnitTracker, UnitTrackerBase
from shards.mirror import s3_stream_urls
from shards.names import index_file_name
from shards.s3_reader import check_committed_s3_shards
from shards.segments import SegmentFollower, SegmentManifest, SegmentUnitTracker
from shards.storage import S3Store


def open_manifest(stream_dir: "str | Path | S3Url") -> Manifest | SegmentManifest:
    """The manifest of a stream: its ``manifest.jsonl`` locally, its merged segments on object storage."""
    location = stream_location(stream_dir)
    return SegmentManifest(location) if isinstance(location, S3Url) else Manifest(location)


def open_follower(stream_dir: "str | Path | S3Url") -> ManifestFollower | SegmentFollower:
    """A follower of a stream's manifest, from its start."""
    location = stream_location(stream_dir)
    return SegmentFollower(location) if isinstance(location, S3Url) else ManifestFollower(location)


def open_unit_tracker(stream_dir: "str | Path | S3Url") -> UnitTrackerBase:
    """Work-unit progress of a stream, advanced on every ``refresh``."""
    location = stream_location(stream_dir)
    return SegmentUnitTracker(location) if isinstance(location, S3Url) else UnitTracker(location)


def check_committed_shards(stream_dir: "str | Path | S3Url", stage: bool = False):
    """``shards.reader.check_committed_shards`` on either backend: (readable, damaged) committed shards.

    On object storage the readable shards are S3Urls (``str()`` gives the ``s3://`` path DALI reads,
    ``with_name`` the index beside it), so a reader built for paths takes them unchanged; with
    ``stage`` they are local copies on this node instead (``shards.s3_staging``: what DALI reads fast).
    A local stream is read where it is either way.
    """
    location = stream_location(stream_dir)
    if isinstance(location, S3Url):
        return check_committed_s3_shards(location, stage)
    return reader.check_committed_shards(location)


def stream_locations(root: "str | Path | S3Url") -> list[StreamLocation]:
    """The streams under a store root: itself if it is one, else its children (``reader.stream_dirs`` on either backend)."""
    location = stream_location(root)
    return s3_stream_urls(location) if isinstance(location, S3Url) else reader.stream_dirs(location)


def read_stream_file(stream_dir: "str | Path | S3Url", name: str, what: str, max_bytes: int) -> bytes | None:
    """A small file genint keeps beside a stream's shards (e.g. its generation plan); None if there is none.

    Raises:
        StoreFileError: locally, when it is no regular file or larger than ``max_bytes``.
        StorageError: on object storage, when it is larger or cannot be read.
    """
    location = stream_location(stream_dir)
    if isinstance(location, S3Url):
        try:
            return S3Store(location).get(name, what, max_bytes)
        except MissingObjectError:
            return None
    if not (location / name).exists():
        return None
    return read_regular(location / name, what, max_bytes)


def write_stream_file(stream_dir: "str | Path | S3Url", name: str, data: bytes) -> None:
    """Write (or replace) a small file beside a stream's shards, whole: a durable rename locally, one PUT on object storage."""
    location = stream_location(stream_dir)
    if isinstance(location, S3Url):
        S3Store(location).put(name, data)
        return
    location.mkdir(parents=True, exist_ok=True)
    write_durably(location / name, data)


def fetch_shard(stream_dir: "str | Path | S3Url", record: ManifestRecord, cache_dir: Path) -> Path:
    """A local path of a committed shard's tar, its DALI index beside it: the stream's own file
    locally, a copy downloaded into ``cache_dir`` (tar and index) from object storage.

    The copy is checked by the caller like any local shard (``reader.check_shard``), so a shard
    truncated or replaced on the store is refused the same way.
    """
    location = stream_location(stream_dir)
    if not isinstance(location, S3Url):
        return location / record.name
    store = S3Store(location)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # A missing or unreadable object raises StorageError (a ShardError): the caller counts the shard as damaged.
    store.download(record.name, cache_dir / record.name, "shard")
    store.download(index_file_name(record.name), cache_dir / index_file_name(record.name), "DALI index")
    return cache_dir / record.name
