"""The manifest of a stream on object storage: per-writer segments instead of one appended file.

An object store has no append and no lock, so every commit is its own small object,
``<stream>/manifest/<writer>/<seq>.jsonl``, written by that writer alone with a conditional put
(``If-None-Match: *``): a commit lands once or not at all, and a second live writer with the same
id (or a restarted writer re-committing a sequence number) is refused instead of overwriting. The
shard and its index are uploaded first, so a segment never names an object that is not whole.

A stream copied from a local store (``aws s3 sync``) brings its single ``manifest.jsonl``: it is
read as the stream's first segment, in its own line order, so such a copy needs no migration and
its writers go on committing segments after it.

Readers merge the segments in commit order: by commit time, then writer and sequence number, which
keeps every writer's own commits in order (its committer thread commits them one after another,
and S3 listing is strongly consistent, so a listed ``seq`` implies every lower one is listed too).
"""

import json
import re

from shards.errors import ManifestError
from shards.manifest import MANIFEST_NAME, ManifestRecord, UnitProgress, UnitTrackerBase, parse_line
from shards.storage import S3Store, S3Url

SEGMENT_DIR = "manifest"
MAX_SEGMENT_BYTES = 2**20
# A copied local manifest holds one line per shard of the whole stream.
MAX_COPIED_MANIFEST_BYTES = 2**31
_SEGMENT_KEY = re.compile(rf"{SEGMENT_DIR}/([A-Za-z0-9_]+)/(\d{{12}})\.jsonl")


def segment_key(writer: str, seq: int) -> str:
    return f"{SEGMENT_DIR}/{writer}/{seq:012d}.jsonl"


def _commit_order(record: ManifestRecord) -> tuple[float, str, int]:
    return record.time, record.writer, record.seq


class SegmentManifest:
    """The merged manifest segments of one stream under an ``s3://`` stream prefix."""

    def __init__(self, stream_url: S3Url):
        self.stream_dir = stream_url
        self.store = S3Store(stream_url)

    def segment_keys(self) -> list[str]:
        """Keys of every committed segment, a copied ``manifest.jsonl`` first (other objects are ignored)."""
        keys = [key for key, _ in self.store.list(MANIFEST_NAME) if key == MANIFEST_NAME]
        return keys + [key for key, _ in self.store.list(SEGMENT_DIR + "/") if _SEGMENT_KEY.fullmatch(key)]

    def read_segments(self, keys: list[str]) -> list[ManifestRecord]:
        """The records of the segments ``keys``, segment after segment (the objects fetched several at once)."""
        def get(key: str) -> bytes:
            copied = key == MANIFEST_NAME
            return self.store.get(key, "copied manifest" if copied else "manifest segment",
                                  MAX_COPIED_MANIFEST_BYTES if copied else MAX_SEGMENT_BYTES)

        records = []
        for key, data in zip(keys, self.store.map(get, keys)):
            where = str(self.stream_dir.join(key))
            records.extend(parse_line(line, f"{where}:{number}") for number, line in enumerate(data.splitlines(), 1))
        return records

    def merged(self, keys: "list[str] | set[str]") -> list[ManifestRecord]:
        """The records of the segments ``keys``, in commit order (a copied manifest's lines first, as they stand)."""
        copied = [MANIFEST_NAME] if MANIFEST_NAME in keys else []
        return self.read_segments(copied) + sorted(self.read_segments([key for key in keys if key != MANIFEST_NAME]), key=_commit_order)

    def records(self) -> list[ManifestRecord]:
        """Every committed record, in commit order (a copied manifest's lines first, as they stand)."""
        return self.merged(self.segment_keys())

    def shards(self) -> list[ManifestRecord]:
        return [record for record in self.records() if record.kind == "shard"]

    def append(self, records: list[ManifestRecord]) -> None:
        """Commit ``records`` (one writer's, first one's seq names the segment) as one new segment.

        Raises:
            ManifestError: when that segment exists already (another live writer uses this id).
        """
        first = records[0]
        key = segment_key(first.writer, first.seq)
        payload = b"".join(record.to_line() for record in records)
        if not self.store.put_new(key, payload):
            raise ManifestError(f"{self.stream_dir.join(key)}: already committed; writer id {first.writer!r} "
                                "is in use by another writer of this stream (give each concurrent writer its own id)")

    def unit_progress(self) -> dict[str, UnitProgress]:
        return SegmentUnitTracker(self.stream_dir).refresh().progress()


class SegmentFollower:
    """The records of a growing segmented manifest as they commit; its position (the segments seen) can be saved."""

    def __init__(self, stream_url: S3Url):
        self.manifest = SegmentManifest(stream_url)
        self._seen: set[str] = set()

    def poll(self) -> list[ManifestRecord]:
        return [record for record in self.poll_records() if record.kind == "shard"]

    def poll_records(self) -> list[ManifestRecord]:
        """Records of the segments committed since the last poll, in commit order (one LIST, one GET per new segment)."""
        new = [key for key in self.manifest.segment_keys() if key not in self._seen]
        records = self.manifest.merged(new)
        self._seen.update(new)  # only after every new segment parsed: a bad one is reported again
        return records

    def seen_records(self) -> list[ManifestRecord]:
        """Every record of the segments seen so far, in commit order (a copied manifest's lines first)."""
        return self.manifest.merged(self._seen)

    def state_dict(self) -> dict[str, str]:
        return {"segments": json.dumps(sorted(self._seen))}

    def load_state_dict(self, state: dict[str, str]) -> None:
        self._seen = set(json.loads(state["segments"]))


class SegmentUnitTracker(UnitTrackerBase):
    """Work-unit progress of a stream on object storage, advanced from the segments committed since the last refresh."""

    def __init__(self, stream_url: S3Url):
        super().__init__(SegmentFollower(stream_url))
