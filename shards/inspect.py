"""``genint shards inspect``: what a store holds, per stream.

Counts and class histograms come from the manifest; the provenance summary reads only the
``json`` members of the committed shards. A shard that readers would refuse (see
``shards.reader.check_shard``) or a ``json`` member that is not a JSON object is a one-line error.
"""

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from shards.errors import ShardError, StoreFileError
from shards.files import open_regular
from shards.manifest import ManifestRecord
from shards.mirror import mirrored_store
from shards.reader import check_committed_shards, iter_members, stream_dirs
from shards.locations import is_s3_url

# Per-sample fields such as a source path have as many values as samples; stop tracking new
# values past this many so inspect stays in bounded memory on ImageNet-sized streams.
MAX_TRACKED_VALUES = 1000


@dataclass
class FieldSummary:
    """How one provenance field is filled across a stream's samples."""

    samples: int = 0
    values: Counter = field(default_factory=Counter)
    untracked_samples: int = 0

    def add(self, value: object) -> None:
        self.samples += 1
        text = json.dumps(value, sort_keys=True)
        if text in self.values or len(self.values) < MAX_TRACKED_VALUES:
            self.values[text] += 1
        else:
            self.untracked_samples += 1

    @property
    def distinct(self) -> str:
        """Number of distinct values, as ">N" once tracking stopped."""
        return f">{len(self.values)}" if self.untracked_samples else str(len(self.values))

    def most_common(self, count: int = 3) -> list[tuple[str, int]]:
        return self.values.most_common(count)


@dataclass
class StreamSummary:
    """One stream's totals, class histogram and provenance fields."""

    name: str
    shards: int
    samples: int
    bytes: int
    class_counts: Counter
    provenance: dict[str, FieldSummary]


def _provenance_records(tar_path: Path, record: ManifestRecord) -> Iterator[dict]:
    """The ``json`` member of every sample, parsed (never more than the manifest's bytes read)."""
    with open_regular(tar_path, "shard") as handle:
        for member, data in iter_members(handle, tar_path, record.bytes, select=lambda name: name.endswith(".json")):
            try:
                entry = json.loads(data)
            except (ValueError, RecursionError) as error:
                raise StoreFileError(tar_path, f"member {member.name} is not valid JSON ({type(error).__name__}: "
                                               f"{str(error)[:200]})") from None
            if not isinstance(entry, dict):
                raise StoreFileError(tar_path, f"member {member.name} is not a JSON object (got {type(entry).__name__})")
            yield entry


def summarize_stream(stream_dir: Path) -> StreamSummary:
    """Summarize the committed shards of one stream directory."""
    shards, damaged = check_committed_shards(stream_dir)
    if damaged:
        raise ShardError(damaged[0].reason)
    class_counts: Counter = Counter()
    provenance: dict[str, FieldSummary] = defaultdict(FieldSummary)
    for tar_path, record in shards:
        class_counts.update(record.class_counts)
        for entry in _provenance_records(tar_path, record):
            for name, value in entry.items():
                provenance[name].add(value)
    return StreamSummary(
        name=stream_dir.name,
        shards=len(shards),
        samples=sum(record.samples for _, record in shards),
        bytes=sum(record.bytes for _, record in shards),
        class_counts=class_counts,
        provenance=dict(sorted(provenance.items())),
    )


def summarize_store(root: "Path | str") -> list[StreamSummary]:
    """Summaries of every stream under ``root`` (a directory, or an ``s3://`` store read from a temp copy)."""
    if is_s3_url(root):
        with mirrored_store(root) as copy:
            try:
                return summarize_store(copy.root)
            except ShardError as error:
                raise ShardError(copy.to_url(str(error))) from None
    return [summarize_stream(stream_dir) for stream_dir in stream_dirs(root)]
