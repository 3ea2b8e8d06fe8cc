"""The batch sources the training loop reads: each stream's rows, decoded ahead of the step.

Static streams read and decode in one DALI pipeline (``StaticReader``); growing streams read in
Python and decode in a DALI stage fed ahead (``GrowingFeed``). Both hand out decoded rows with
the bad ones flagged; the batch source refuses those and fills the batch up from the next rows.
``build_batch_source`` is the one place a rank's loader for a stream is built from config.
"""

import dataclasses
import zlib
from pathlib import Path

from shards.locations import S3Url
from trainers.batches import StreamBatch, StreamStats
from trainers.config import StreamConfig
from trainers.data.bad_data import bad_samples_error
from trainers.data.config import LoaderConfig
from trainers.data.decode import UNDECODABLE, UNREADABLE, DecodedRows, DecodeStage, concatenate
from trainers.data.feed import GrowingFeed
from trainers.data.growing import GrowingReader
from trainers.data.static import StaticReader
from trainers.errors import TrainError


class DaliBatchSource:
    """One stream's batches on one rank (implements ``trainers.batches.BatchSource``).

    Static streams cycle through epochs. Growing streams read each committed sample once and,
    when fewer unread samples than a batch are committed, follow ``when_short``: ``wait``
    (poll the manifest until enough commit, TrainError after ``wait_timeout_s``), ``reuse``
    (fill up with already-committed samples; skip while nothing is committed yet) or ``skip``
    (return None). Undecodable images are dropped, counted and replaced, or raise TrainError
    when ``train.data.on_bad_sample == "fail"``. The next batch decodes while the caller trains
    on this one (``train.data.prefetch_queue_depth``).
    """

    def __init__(self, stream: str, rows: StaticReader | GrowingFeed, stream_config: StreamConfig,
                 loader: LoaderConfig, stats: StreamStats):
        self.stream = stream
        self.stats = stats
        self._rows = rows
        self._config = stream_config
        self._loader = loader
        self._growing = isinstance(rows, GrowingFeed)
        self._refused = 0
        self.stats.bad_samples = rows.damaged_samples

    @property
    def batches_ahead(self) -> int:
        """Batches being prepared beyond those handed out (at most ``prefetch_queue_depth - 1``)."""
        return self._rows.batches_ahead

    @property
    def failed_batches(self) -> int:
        """Batches that failed to decode and took the rebuild-and-probe path."""
        return self._rows.failed_batches

    def _refuse(self, rows: DecodedRows) -> None:
        for reason in (UNREADABLE, UNDECODABLE):
            where = [rows.where[row] for row, why in sorted(rows.bad.items()) if why == reason]
            if not where:
                continue
            if self._loader.on_bad_sample == "fail":
                raise bad_samples_error(self.stream, reason, where)
            self._refused += len(where)
        self.stats.bad_samples = self._refused + self._rows.damaged_samples

    def next_batch(self) -> StreamBatch | None:
        """The stream's next batch of exactly ``batch_size`` samples, or None to skip this step."""
        parts, count = [], 0
        while count < self._config.batch_size:
            rows = self._rows.take(self._config.batch_size - count)
            if rows is None:
                # The policy skips this step; rows already taken for it (a refill's) are dropped.
                return None
            if rows.bad:
                self._refuse(rows)
                rows = rows.good()
            parts.append(rows)
            count += len(rows)
        if self._growing:
            self._rows.prefetch()
        batch = concatenate(parts)
        self.stats.samples += count
        self._update_gauges()
        partners = batch.partners
        return StreamBatch(images=batch.images, labels=batch.labels, values=batch.values,
                           partner_images=None if partners is None else partners.images,
                           partner_labels=None if partners is None else partners.labels)

    def _update_gauges(self) -> None:
        self.stats.bad_samples = self._refused + self._rows.damaged_samples
        if self._growing:
            self.stats.backlog = self._rows.backlog
            self.stats.extra["committed_samples"] = float(self._rows.reader.committed)
        else:
            self.stats.extra["epoch"] = float(self.stats.samples // self._rows.epoch_samples)

    def state_dict(self) -> dict:
        return {"reader": self._rows.state_dict(), "stats": dataclasses.asdict(self.stats)}

    def load_rescaled_state_dicts(self, states: list[dict]) -> bool:
        """Continue from the states every rank of a run with another worker count saved (see
        ``trainers.checkpoint``): a growing stream reads the unread rest of this rank's shards and
        returns True; a static stream's DALI position belongs to one sharding, so it starts afresh (False)."""
        if not self._growing:
            return False
        self._rows.load_rescaled_state_dicts([state["reader"] for state in states])
        return True

    def load_state_dict(self, state: dict) -> None:
        self._rows.load_state_dict(state["reader"])
        # In place: the growing feed counts its policy's outcomes into this object.
        for name, value in dataclasses.asdict(StreamStats(**state["stats"])).items():
            setattr(self.stats, name, value)
        self._refused = self.stats.bad_samples - self._rows.damaged_samples

    def close(self) -> None:
        if self._growing:
            self._rows.close()


def _stream_seed(seed: int, stream: str, rank: int) -> int:
    """A 31-bit DALI seed distinct per stream and rank, fixed by the run's seed."""
    return (seed * 1_000_003 + zlib.crc32(stream.encode()) * 101 + rank) % 2**31


def build_batch_source(
    stream: str,
    stream_dir: "Path | S3Url",
    stream_config: StreamConfig,
    loader: LoaderConfig,
    rank: int,
    world_size: int,
    device: str,
    seed: int,
    growing: bool,
    variables: tuple[str, ...] = (),
) -> DaliBatchSource:
    """Build the batch source of one stream on one rank.

    Args:
        stream: stream name (``original``, ``interventional``, ...).
        stream_dir: the stream's directory or ``s3://`` prefix (holds its manifest and shards).
        stream_config: batch size, ``when_short`` policy, augmentation.
        loader: sizes, normalisation, threads, prefetch depth, bad-sample policy.
        rank, world_size: this trainer's part of the stream.
        device: ``cpu`` or ``cuda[:i]``; CUDA decodes on the GPU (DALI ``mixed``).
        seed: the run's seed; shuffling and augmentation follow from it.
        growing: True while datagen may still commit shards to this stream.
        variables: the causal variables each batch carries, read from the samples' json (static streams only).

    Returns:
        A DaliBatchSource.

    Raises:
        TrainError: batch size 0, a static stream with no readable shards, or causal variables asked of a growing stream.
    """
    if stream_config.batch_size == 0:
        raise TrainError(f"stream {stream}: batch_size is 0, so it is never read; build no source for it")
    if not 0 <= rank < world_size:
        raise TrainError(f"stream {stream}: rank {rank} outside world size {world_size}")
    stats = StreamStats()
    if growing and stream_config.pairs:
        raise TrainError(f"stream {stream}: pairs are read from static streams only; train gradient supervision on prepared or finished streams")
    if growing and variables:
        raise TrainError(f"stream {stream}: causal variables ({', '.join(variables)}) are read from static streams only; "
                         "train interchange interventions on prepared streams")
    if growing:
        # One seed on every rank: a shard's sample order must not depend on the rank reading it (rescaling).
        reader = GrowingReader(stream_dir, rank, world_size, _stream_seed(seed, stream, rank=0))
        decode = DecodeStage(stream_config.batch_size, stream_config.augment, loader, device, _stream_seed(seed, stream, rank))
        rows = GrowingFeed(stream, reader, decode, stream_config, loader, stats)
    else:
        rows = StaticReader(stream, stream_dir, stream_config.batch_size, stream_config.augment, loader, device,
                            rank, world_size, seed, variables, stream_config.pairs)
    return DaliBatchSource(stream, rows, stream_config, loader, stats)
