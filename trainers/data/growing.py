"""Reading a growing stream (datagen still writing) by following its manifest.

Design choice: samples are read in Python from the committed tars at the offsets of their
``.idx`` files and fed to DALI through ``fn.external_source`` (``DecodeStage``), rather than
rebuilding ``fn.readers.webdataset`` for every window of newly committed shards. A shard
committed a moment ago is readable at the next ``poll`` with no pipeline rebuild (a rebuild
would also drop the reader's shuffle buffer and prefetch queue), and the reading position is
plain data (per-shard counts) that saves and restores exactly. Reading is one ``pread`` per
member; the cost that matters, decoding, stays in DALI.

Shard i in commit order belongs to rank ``i % world_size``, so ranks read disjoint data. On object
storage the merged order of the writers' manifest segments is not append-only (a segment that
commits late can carry an earlier time than one already read), so there a shard's slot is its own
(writer, seq) instead, the same whichever order a rank happens to see segments in: each writer's
shards go round-robin over the ranks. Each shard a rank owns is downloaded whole (tar and index)
into a temp directory when it is taken in, then checked and read as a local shard; the directory
goes when the reader does.
Within a rank, each draw picks a shard with probability proportional to its unread samples
and takes that shard's next sample in a fixed per-shard permutation: shards written by one
generator often hold a single class, and this mixes classes across the whole backlog. A batch's
draws are made at once (how many from each shard: multivariate hypergeometric over the unread
counts; their order: a permutation), the same distribution as one draw at a time. The cost of a
batch grows with the shards that still hold unread samples, not with the stream: fully read
shards leave the active list. A batch opens the files it reads and closes them when it is read,
so however many shards a rank holds, it keeps at most a batch's worth of descriptors.

A shard's permutation follows from the stream's seed and the shard's commit position alone,
never from the rank reading it, so its read count names the same samples on any rank: a run
rescaled to another world size merges the old ranks' counts and each new rank reads the unread
rest of the shards it now owns (``load_rescaled_state_dicts``).
"""

import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from shards.errors import ShardError
from shards.files import open_regular
from shards.index import IndexMember, image_and_class
from shards.locations import S3Url, StreamLocation, stream_location
from shards.manifest import ManifestRecord
from shards.reader import DamagedShard, check_shard
from shards.stores import fetch_shard, open_follower
from trainers.data.decode import UNREADABLE_LABEL, EncodedSample, read_label


@dataclass
class _Member:
    offset: int
    size: int


@dataclass
class _Shard:
    """One committed shard of this rank: its samples' member locations and how many were read."""

    name: str
    path: Path
    images: list[_Member]
    labels: list[_Member]
    keys: list[str]
    order: np.ndarray
    read: int = 0

    @property
    def unread(self) -> int:
        return len(self.keys) - self.read


def _locations(samples: list[list[IndexMember]]) -> tuple[list[_Member], list[_Member], list[str]]:
    """Image and ``cls`` member locations and keys of every sample of a checked index."""
    images, labels, keys = [], [], []
    for members in samples:
        image, label = image_and_class(members)
        images.append(_Member(image.offset, image.size))
        labels.append(_Member(label.offset, label.size))
        keys.append(image.key)
    return images, labels, keys


class GrowingReader:
    """Encoded samples of one rank's part of a stream whose manifest is still growing.

    Args:
        stream_dir: the stream's directory, or its ``s3://`` prefix.
        rank, world_size: this reader's shards are those at commit position ``rank`` modulo
            ``world_size``.
        seed: the stream's seed, the same on every rank: it fixes each shard's sample order, and
            with the rank this reader's draw order.
    """

    def __init__(self, stream_dir: "StreamLocation | str", rank: int, world_size: int, seed: int):
        self.stream_dir = stream_location(stream_dir)
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self._on_object_storage = isinstance(self.stream_dir, S3Url)
        # Removed when the reader is garbage-collected (or the process exits).
        self._cache = tempfile.TemporaryDirectory(prefix="genint-growing-") if self._on_object_storage else None
        self._follower = open_follower(self.stream_dir)
        self._shards_seen = 0
        self._shards: list[_Shard] = []
        self._active: list[_Shard] = []  # own shards with unread samples, in commit order
        self._backlog = 0
        self._committed = 0
        self._rng = np.random.default_rng([seed, rank])
        self._files: dict[Path, BinaryIO] = {}
        self.damaged: list[DamagedShard] = []  # this rank's committed shards the reader checks refused

    def _slot(self, record: ManifestRecord, position: int) -> list[int]:
        """The shard's place in the stream, free of any rank (see the module doc): its commit position,
        or on object storage its writer and sequence number."""
        if self._on_object_storage:
            return [zlib.crc32(record.writer.encode()), record.seq]
        return [position]

    def _add(self, record: ManifestRecord) -> None:
        slot = self._slot(record, self._shards_seen)
        self._shards_seen += 1
        if sum(slot) % self.world_size != self.rank:
            return
        try:
            path = fetch_shard(self.stream_dir, record, Path(self._cache.name)) if self._cache else self.stream_dir / record.name
            samples = check_shard(path, record)
        except ShardError as error:
            self.damaged.append(DamagedShard(self.stream_dir / record.name, record, str(error)))
            return
        images, labels, keys = _locations(samples)
        order = np.random.default_rng([self.seed, *slot]).permutation(len(keys))  # rank-free: see the module doc
        shard = _Shard(record.name, path, images, labels, keys, order)
        self._shards.append(shard)
        self._committed += len(keys)
        if shard.unread:
            self._active.append(shard)
            self._backlog += shard.unread

    def poll(self) -> None:
        """Take in shards committed since the last poll."""
        for record in self._follower.poll():
            self._add(record)

    @property
    def damaged_samples(self) -> int:
        """Samples of the damaged shards (counted as bad samples)."""
        return sum(shard.record.samples for shard in self.damaged)

    @property
    def backlog(self) -> int:
        """Committed samples of this rank not read yet."""
        return self._backlog

    @property
    def committed(self) -> int:
        """Committed samples of this rank (read or not)."""
        return self._committed

    @property
    def committed_shards(self) -> int:
        return len(self._shards)

    def _read(self, shard: _Shard, sample: int) -> EncodedSample:
        if shard.path not in self._files:
            # Kept open until the batch is read (``take``/``resample`` close it); a regular file, as check_shard saw it.
            self._files[shard.path] = open_regular(shard.path, "shard")
        descriptor = self._files[shard.path].fileno()
        image, label = shard.images[sample], shard.labels[sample]
        where = f"{shard.path}:{shard.keys[sample]}"
        image_bytes = os.pread(descriptor, image.size, image.offset)
        label_value = read_label(os.pread(descriptor, label.size, label.offset), where)
        if len(image_bytes) != image.size or label_value == UNREADABLE_LABEL:
            # A short read (the file changed under us) or a non-decimal label: the batch source
            # counts it as a bad sample.
            return EncodedSample(np.zeros(0, np.uint8), UNREADABLE_LABEL, where)
        return EncodedSample(np.frombuffer(image_bytes, np.uint8), label_value, where)

    def take(self, count: int) -> list[EncodedSample]:
        """Draw ``count`` unread samples (``count`` must not exceed ``backlog``)."""
        assert count <= self._backlog, "take() beyond the backlog"
        if count == 0:
            return []
        per_shard = self._rng.multivariate_hypergeometric([shard.unread for shard in self._active], count)
        picks = []
        for shard, taken in zip(self._active, per_shard.tolist()):
            picks += [(shard, int(sample)) for sample in shard.order[shard.read:shard.read + taken]]
            shard.read += taken
        out = [self._read(*picks[i]) for i in self._rng.permutation(count)]
        self.close()
        self._backlog -= count
        if any(not shard.unread for shard in self._active):
            self._active = [shard for shard in self._active if shard.unread]
        return out

    def resample(self, count: int) -> list[EncodedSample]:
        """Draw ``count`` committed samples uniformly, read or not, without marking them read."""
        sizes = np.array([len(shard.keys) for shard in self._shards], dtype=np.float64)
        shards = self._rng.choice(len(self._shards), size=count, p=sizes / sizes.sum())
        out = [self._read(self._shards[i], int(self._rng.integers(len(self._shards[i].keys)))) for i in shards.tolist()]
        self.close()
        return out

    def state_dict(self) -> dict:
        return {
            "follower": self._follower.state_dict(),
            "shards_seen": self._shards_seen,
            "read": {shard.name: shard.read for shard in self._shards},
            "rng": self._rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        """Rebuild the shard list from the manifest up to the saved position and restore the counts."""
        self._rebuild(_follower_state(state), state["read"], keep_order=True)
        self._rng.bit_generator.state = state["rng"]

    def load_rescaled_state_dicts(self, states: list[dict]) -> None:
        """Continue from the states that every rank of a run with another world size saved.

        The old ranks read disjoint shards, so their per-shard read counts merge into one count per
        shard of the stream; this reader takes the shards it owns under its own rank and world size,
        each from the first sample no old rank read. The manifest position is the furthest old
        rank's (a shard it saw that its old owner had not polled yet is simply unread; on object
        storage a later listing holds every segment an earlier one did, so it is the largest); shards
        committed after that come in at the next ``poll``. The draw order starts afresh from the seed.
        """
        read: dict[str, int] = {}
        for state in states:
            read.update(state["read"])
        assert len(read) == sum(len(state["read"]) for state in states), "old ranks' shards overlap"
        furthest = max(states, key=lambda state: state["shards_seen"])
        self._rebuild(_follower_state(furthest), read)
        self._rng = np.random.default_rng([self.seed, self.rank])

    def _rebuild(self, follower_state: dict, read: dict[str, int], keep_order: bool = False) -> None:
        """Take in the shards the manifest held at the saved follower position, follow it from there
        and set each own shard's read count (0 for a shard ``read`` does not name); ``keep_order``
        puts the shards back in the order ``read`` lists them (this rank's own, as it took them in)."""
        self.close()
        self._follower = open_follower(self.stream_dir)
        self._follower.load_state_dict(follower_state)
        self._shards_seen, self._shards, self.damaged = 0, [], []
        self._active, self._backlog, self._committed = [], 0, 0
        for record in self._follower.seen_records():
            if record.kind == "shard":
                self._add(record)
        if keep_order:
            # On object storage the order a rank took shards in may differ from the merged commit
            # order; restoring it makes the draws after a restore repeat exactly.
            taken_in = {name: index for index, name in enumerate(read)}
            self._shards.sort(key=lambda shard: taken_in.get(shard.name, len(taken_in)))
        for shard in self._shards:
            shard.read = read.get(shard.name, 0)
        self._active = [shard for shard in self._shards if shard.unread]
        self._backlog = sum(shard.unread for shard in self._active)

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files = {}


def _follower_state(state: dict) -> dict:
    """The saved manifest position (checkpoints written before object storage saved a bare offset)."""
    return state["follower"] if "follower" in state else {"offset": state["manifest_offset"]}
