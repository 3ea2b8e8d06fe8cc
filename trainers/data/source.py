"""The batch sources the training loop reads: a reader of encoded samples plus the decode stage.

``build_batch_source`` is the one place a rank's loader for a stream is built from config.
"""

import dataclasses
import time
import zlib
from pathlib import Path

import torch

from trainers.batches import StreamBatch, StreamStats
from trainers.config import StreamConfig
from trainers.data.bad_data import bad_samples_error, damaged_shards_error
from trainers.data.config import LoaderConfig
from trainers.data.decode import UNREADABLE_LABEL, DecodeStage, EncodedSample
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
    when ``train.data.on_bad_sample == "fail"``.
    """

    def __init__(self, stream: str, reader: StaticReader | GrowingReader, decode: DecodeStage,
                 stream_config: StreamConfig, loader: LoaderConfig):
        self.stream = stream
        self.stats = StreamStats()
        self._reader = reader
        self._decode = decode
        self._config = stream_config
        self._loader = loader
        self._growing = isinstance(reader, GrowingReader)
        self._refused = 0
        self.stats.bad_samples = reader.damaged_samples

    def _refuse(self, bad: list[EncodedSample], reason: str) -> None:
        if self._loader.on_bad_sample == "fail":
            raise bad_samples_error(self.stream, reason, [sample.where for sample in bad])
        self._refused += len(bad)
        self.stats.bad_samples = self._refused + self._reader.damaged_samples

    def _fill(self, count: int) -> list[EncodedSample] | None:
        """``count`` samples by the stream's policy, or None when the policy skips this step."""
        if not self._growing:
            return self._reader.take(count)
        reader: GrowingReader = self._reader
        reader.poll()
        if reader.damaged and self._loader.on_bad_sample == "fail":
            raise damaged_shards_error(self.stream, reader.damaged)
        if reader.backlog >= count:
            return reader.take(count)
        policy = self._config.when_short
        if policy == "wait":
            return self._wait_for(count)
        if policy == "reuse" and reader.committed > 0:
            self.stats.reused_batches += 1
            unread = reader.take(reader.backlog)
            return unread + reader.resample(count - len(unread))
        self.stats.skipped_batches += 1
        return None

    def _wait_for(self, count: int) -> list[EncodedSample]:
        reader: GrowingReader = self._reader
        start = time.monotonic()
        try:
            while reader.backlog < count:
                if time.monotonic() - start > self._config.wait_timeout_s:
                    raise TrainError(
                        f"stream {self.stream}: waited {self._config.wait_timeout_s:g} s for {count} unread samples "
                        f"in {reader.stream_dir}; rank {reader.rank} has {reader.committed} samples in "
                        f"{reader.committed_shards} committed shards, {reader.backlog} unread; raise "
                        f"train.streams.{self.stream}.wait_timeout_s or set train.streams.{self.stream}.when_short: "
                        "reuse or skip"
                    )
                time.sleep(self._loader.poll_interval_s)
                reader.poll()
        finally:
            self.stats.wait_s += time.monotonic() - start
        return reader.take(count)

    def next_batch(self) -> StreamBatch | None:
        """The stream's next batch of exactly ``batch_size`` samples, or None to skip this step."""
        samples = self._fill(self._config.batch_size)
        if samples is None:
            return None
        while True:
            unreadable = [sample for sample in samples if sample.label == UNREADABLE_LABEL]
            if unreadable:
                self._refuse(unreadable, "unreadable sample (short read or non-decimal cls)")
                samples = [sample for sample in samples if sample.label != UNREADABLE_LABEL]
            else:
                images = self._decode.run(samples)
                if isinstance(images, torch.Tensor):
                    break
                bad = set(images)
                self._refuse([samples[i] for i in sorted(bad)], "undecodable image")
                samples = [sample for i, sample in enumerate(samples) if i not in bad]
            # Replacements come from the same policy; a skip here drops the step's batch.
            more = self._fill(self._config.batch_size - len(samples))
            if more is None:
                return None
            samples += more
        self.stats.samples += len(samples)
        self._update_gauges()
        labels = torch.tensor([sample.label for sample in samples], dtype=torch.int64, device=images.device)
        return StreamBatch(images=images, labels=labels)

    def _update_gauges(self) -> None:
        self.stats.bad_samples = self._refused + self._reader.damaged_samples
        if self._growing:
            self.stats.backlog = self._reader.backlog
            self.stats.extra["committed_samples"] = float(self._reader.committed)
        else:
            self.stats.extra["epoch"] = float(self.stats.samples // self._reader.epoch_samples)

    def state_dict(self) -> dict:
        return {
            "reader": self._reader.state_dict(),
            "decode": self._decode.state_dict(),
            "stats": dataclasses.asdict(self.stats),
        }

    def load_state_dict(self, state: dict) -> None:
        self._reader.load_state_dict(state["reader"])
        self._decode.load_state_dict(state["decode"])
        self.stats = StreamStats(**state["stats"])
        self._refused = self.stats.bad_samples - self._reader.damaged_samples

    def close(self) -> None:
        if self._growing:
            self._reader.close()


def _stream_seed(seed: int, stream: str, rank: int) -> int:
    """A 31-bit DALI seed distinct per stream and rank, fixed by the run's seed."""
    return (seed * 1_000_003 + zlib.crc32(stream.encode()) * 101 + rank) % 2**31


def build_batch_source(
    stream: str,
    stream_dir: Path,
    stream_config: StreamConfig,
    loader: LoaderConfig,
    rank: int,
    world_size: int,
    device: str,
    seed: int,
    growing: bool,
) -> DaliBatchSource:
    """Build the batch source of one stream on one rank.

    Args:
        stream: stream name (``original``, ``interventional``, ...).
        stream_dir: the stream's directory (holds its manifest and shards).
        stream_config: batch size, ``when_short`` policy, augmentation.
        loader: sizes, normalisation, threads, bad-sample policy.
        rank, world_size: this trainer's part of the stream.
        device: ``cpu`` or ``cuda[:i]``; CUDA decodes on the GPU (DALI ``mixed``).
        seed: the run's seed; shuffling and augmentation follow from it.
        growing: True while datagen may still commit shards to this stream.

    Returns:
        A DaliBatchSource.

    Raises:
        TrainError: batch size 0, or a static stream with no readable shards.
    """
    if stream_config.batch_size == 0:
        raise TrainError(f"stream {stream}: batch_size is 0, so it is never read; build no source for it")
    if not 0 <= rank < world_size:
        raise TrainError(f"stream {stream}: rank {rank} outside world size {world_size}")
    stream_seed = _stream_seed(seed, stream, rank)
    if growing:
        reader = GrowingReader(stream_dir, rank, world_size, stream_seed)
    else:
        reader = StaticReader(stream, stream_dir, stream_config.batch_size, loader, rank, world_size, seed)
    decode = DecodeStage(stream_config.batch_size, stream_config.augment, loader, device, stream_seed)
    return DaliBatchSource(stream, reader, decode, stream_config, loader)
