"""A local copy of an ``s3://`` store, for the commands that read every byte anyway (verify, inspect).

``verify`` hashes and parses every committed shard and ``inspect`` reads every ``json`` member, so
both would download each shard whole even if they streamed it; copying the stream's objects into a
temp directory first lets them run their local checks unchanged, one implementation for both
backends. The merged segments become that copy's ``manifest.jsonl`` (in commit order) and every
object at the stream's top level is copied, so orphans are still found. Messages name the URLs:
``to_url`` maps a path in the copy back to the object it came from.
"""

import contextlib
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shards.errors import ShardError
from shards.manifest import MANIFEST_NAME
from shards.segments import SEGMENT_DIR, SegmentManifest
from shards.storage import S3Store, S3Url

_STREAM_OF_SEGMENT = re.compile(rf"(?:(.+)/)?{SEGMENT_DIR}/[^/]+/[^/]+$")


def s3_stream_urls(root: S3Url) -> list[S3Url]:
    """The streams under ``root``: itself if it holds manifest segments, else its children that do.

    Raises:
        ShardError: when the root holds no manifest segment (with the storage layer's reasons for
        an unreachable endpoint, a missing bucket or refused credentials).
    """
    store = S3Store(root)
    store.check_bucket()
    streams = set()
    for key, _ in store.list(""):
        match = _STREAM_OF_SEGMENT.fullmatch(key)
        if match and "/" not in (match.group(1) or ""):
            streams.add(match.group(1) or "")
    if "" in streams:
        return [root]
    if not streams:
        raise ShardError(f"{root}: no {SEGMENT_DIR}/ segments here or under its direct prefixes (not a genint store)")
    return [root.join(name) for name in sorted(streams)]


def _copy_stream(stream: S3Url, local_dir: Path) -> None:
    manifest = SegmentManifest(stream)
    local_dir.mkdir(parents=True)
    (local_dir / MANIFEST_NAME).write_bytes(b"".join(record.to_line() for record in manifest.records()))
    for key, _ in manifest.store.list(""):
        # Only top-level tars and indexes (orphans included): a key with "/" or a leading dot never
        # becomes a path in the copy.
        if "/" not in key and key.endswith((".tar", ".idx")) and not key.startswith("."):
            manifest.store.download(key, local_dir / key, "shard object")


@dataclass(frozen=True)
class MirroredStore:
    """A temp copy of a store: ``root`` to run local readers on, ``to_url`` to name what they report."""

    root: Path
    url: S3Url
    # The root itself is one stream: the copy is root/<its name>, and that directory stands for the URL.
    single_stream_dir: str | None

    def to_url(self, where: "Path | str") -> str:
        text = str(where)
        base = str(self.root / self.single_stream_dir) if self.single_stream_dir else str(self.root)
        return text.replace(base, str(self.url), 1) if text.startswith(base) else text


@contextlib.contextmanager
def mirrored_store(url: str) -> Iterator[MirroredStore]:
    """Copy the store at ``url`` into a temp directory for the duration of the ``with`` block."""
    root_url = S3Url.parse(url)
    streams = s3_stream_urls(root_url)
    single = (root_url.name or root_url.bucket) if streams == [root_url] else None
    temp = Path(tempfile.mkdtemp(prefix="genint-mirror-"))
    try:
        for stream in streams:
            _copy_stream(stream, temp / (single or stream.name))
        yield MirroredStore(temp, root_url, single)
    finally:
        shutil.rmtree(temp, ignore_errors=True)  # genint's own temp directory
