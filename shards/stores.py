"""Which backend a stream lives on: a local directory (the default) or an ``s3://`` prefix.

Every caller that is handed a store root or stream directory from config goes through these
functions, so the rest of the code never tests the URL scheme itself.
"""

from pathlib import Path

from shards import reader
from shards.manifest import Manifest, ManifestFollower, UnitTracker, UnitTrackerBase
from shards.s3_reader import check_committed_s3_shards
from shards.segments import SegmentFollower, SegmentManifest, SegmentUnitTracker
from shards.storage import S3Url, is_s3_url

StreamLocation = Path | S3Url


def stream_location(value: "str | Path | S3Url") -> StreamLocation:
    """A store root or stream directory as given in config: ``s3://...`` strings become S3Url, the rest Path."""
    if isinstance(value, S3Url):
        return value
    return S3Url.parse(value) if is_s3_url(value) else Path(value)


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


def check_committed_shards(stream_dir: "str | Path | S3Url"):
    """``shards.reader.check_committed_shards`` on either backend: (readable, damaged) committed shards.

    On object storage the readable shards are S3Urls (``str()`` gives the ``s3://`` path DALI reads,
    ``with_name`` the index beside it), so a reader built for paths takes them unchanged.
    """
    location = stream_location(stream_dir)
    if isinstance(location, S3Url):
        return check_committed_s3_shards(location)
    return reader.check_committed_shards(location)
