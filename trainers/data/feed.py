"""A growing stream's batches, drawn and decoding ahead of the step.

The stream's reader (``GrowingReader``) reads encoded samples in Python; the decode stage decodes
them on DALI's threads. After every step the feed draws up to ``prefetch_queue_depth - 1`` full
batches that the committed backlog already holds and submits them, so they decode while the model
trains. A batch the backlog does not hold is drawn when it is asked for, by the stream's
``when_short`` policy (wait, reuse, skip), exactly as without prefetching: a policy never acts early.

Position: a drawn batch's samples are gone from the reader's backlog, so the feed saves, for
every batch still queued, the reader's state before its draws and the draws themselves; a
restore replays them (no manifest poll in between, so the same samples come back) and submits
them again to a decode stage restored from its checkpoint before the first of them. The state's
``reader`` is that first state: the samples in the queue count as unread there.
"""

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from trainers.batches import StreamStats
from trainers.config import StreamConfig
from trainers.data.bad_data import damaged_shards_error
from trainers.data.config import LoaderConfig
from trainers.data.decode import (
    PLACEHOLDER,
    UNDECODABLE,
    UNREADABLE,
    UNREADABLE_LABEL,
    DecodedRows,
    DecodeStage,
    EncodedSample,
    is_decodable,
)
from trainers.data.growing import GrowingReader
from trainers.errors import TrainError

TAKE, RESAMPLE = "take", "resample"  # a draw: unread samples, or committed ones drawn again (reuse)


@dataclass
class _Queued:
    """A batch submitted to the decode stage: how it was drawn and, once collected, its rows."""

    reader_state: dict  # the reader's state before the draws
    draws: list[tuple[str, int]]
    samples: list[EncodedSample]
    placeholders: list[int] = field(default_factory=list)  # rows found undecodable
    checkpoint: str | None = None  # the decode stage's, before this batch (once collected)
    rows: DecodedRows | None = None
    taken: int = 0  # rows handed out

    @property
    def fresh(self) -> int:
        """Samples drawn unread (``take`` draws come first in a batch)."""
        return sum(count for kind, count in self.draws if kind == TAKE)

    def images(self) -> list[np.ndarray]:
        """What the decode stage decodes: each image, or the placeholder for one it must not."""
        skipped = set(self.placeholders)
        return [PLACEHOLDER if row in skipped or sample.label == UNREADABLE_LABEL else sample.image
                for row, sample in enumerate(self.samples)]


class GrowingFeed:
    """Decoded rows of one rank's part of a growing stream, following its ``when_short`` policy.

    Args:
        stream: stream name (for messages).
        reader: the stream's reader on this rank.
        decode: the decode stage its batches go through.
        stream_config: batch size, ``when_short`` policy and its timeout.
        loader: prefetch depth, poll interval, bad-sample policy.
        stats: the batch source's counters (reused, skipped batches and wait time are counted here).
    """

    def __init__(self, stream: str, reader: GrowingReader, decode: DecodeStage, stream_config: StreamConfig,
                 loader: LoaderConfig, stats: StreamStats):
        self.stream = stream
        self.reader = reader
        self.stats = stats
        self.failed_batches = 0  # batches that took the rebuild-and-probe path
        self._decode = decode
        self._config = stream_config
        self._loader = loader
        self._ahead = loader.prefetch_queue_depth - 1
        self._queue: deque[_Queued] = deque()

    @property
    def damaged_samples(self) -> int:
        return self.reader.damaged_samples

    @property
    def batches_ahead(self) -> int:
        """Batches submitted for decoding and not collected yet."""
        return sum(1 for batch in self._queue if batch.rows is None)

    @property
    def backlog(self) -> int:
        """Committed samples of this rank not handed out yet (queued ones included)."""
        return self.reader.backlog + sum(max(0, batch.fresh - batch.taken) for batch in self._queue)

    def _poll(self) -> None:
        self.reader.poll()
        if self.reader.damaged and self._loader.on_bad_sample == "fail":
            raise damaged_shards_error(self.stream, self.reader.damaged)

    def _draw(self, draws: list[tuple[str, int]]) -> list[EncodedSample]:
        samples = []
        for kind, count in draws:
            samples += self.reader.take(count) if kind == TAKE else self.reader.resample(count)
        return samples

    def _submit(self, draws: list[tuple[str, int]]) -> None:
        state = self.reader.state_dict()
        batch = _Queued(state, draws, self._draw(draws))
        self._decode.submit(batch.images())
        self._queue.append(batch)

    def prefetch(self) -> None:
        """Submit full batches the committed backlog holds until ``prefetch_queue_depth - 1`` decode ahead."""
        size = self._config.batch_size
        while self.batches_ahead < self._ahead:
            self._poll()
            if self.reader.backlog < size:
                return
            self._submit([(TAKE, size)])

    def _submit_by_policy(self, count: int) -> bool:
        """Submit ``count`` samples by the ``when_short`` policy; False when it skips this step."""
        self._poll()
        reader = self.reader
        if reader.backlog >= count:
            self._submit([(TAKE, count)])
            return True
        policy = self._config.when_short
        if policy == "wait":
            self._wait_for(count)
            self._submit([(TAKE, count)])
            return True
        if policy == "reuse" and reader.committed > 0:
            self.stats.reused_batches += 1
            unread = reader.backlog
            self._submit([(kind, n) for kind, n in [(TAKE, unread), (RESAMPLE, count - unread)] if n])
            return True
        self.stats.skipped_batches += 1
        return False

    def _wait_for(self, count: int) -> None:
        reader = self.reader
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
                self._poll()
        finally:
            self.stats.wait_s += time.monotonic() - start

    def _collect(self, batch: _Queued) -> None:
        batch.checkpoint = self._decode.checkpoint()
        try:
            images = self._decode.collect()
        except RuntimeError as error:
            images = self._recover(batch, error)
        bad = {row: UNDECODABLE for row in batch.placeholders}
        bad.update({row: UNREADABLE for row, sample in enumerate(batch.samples) if sample.label == UNREADABLE_LABEL})
        labels = torch.tensor([sample.label for sample in batch.samples], dtype=torch.int64)
        batch.rows = DecodedRows(images, labels, [sample.where for sample in batch.samples], bad)

    def _recover(self, batch: _Queued, error: RuntimeError) -> torch.Tensor:
        """Decode a failed batch again from the checkpoint before it, placeholders for its bad images."""
        self.failed_batches += 1
        self._decode.restart(batch.checkpoint)
        batch.placeholders = [row for row, sample in enumerate(batch.samples)
                              if sample.label != UNREADABLE_LABEL and not is_decodable(sample.image, self._decode.device)]
        if not batch.placeholders:
            raise TrainError(f"stream {self.stream}: decoding a batch failed though each image decodes alone: {error}") from error
        for queued in self._queue:  # the failed batch and every later one, in order
            if queued.rows is None:
                self._decode.submit(queued.images())
        try:
            return self._decode.collect()
        except RuntimeError as again:
            raise TrainError(f"stream {self.stream}: a batch failed again with its undecodable images replaced: {again}") from again

    def take(self, count: int) -> DecodedRows | None:
        """The next rows, at most ``count``; None when the policy skips this step."""
        if not self._queue and not self._submit_by_policy(count):
            return None
        batch = self._queue[0]
        if batch.rows is None:
            self._collect(batch)
        start = batch.taken
        batch.taken = min(len(batch.rows), start + count)
        if batch.taken == len(batch.rows):
            self._queue.popleft()
        return batch.rows.rows(start, batch.taken)

    def state_dict(self) -> dict:
        if not self._queue:
            return {"reader": self.reader.state_dict(), "queued": [], "taken": 0, "decode": self._decode.checkpoint()}
        first = self._queue[0]
        return {
            "reader": first.reader_state,
            "queued": [{"reader": batch.reader_state, "draws": [list(draw) for draw in batch.draws],
                        "placeholders": list(batch.placeholders)} for batch in self._queue],
            "taken": first.taken,
            "decode": first.checkpoint if first.rows is not None else self._decode.checkpoint(),
        }

    def load_state_dict(self, state: dict) -> None:
        self._queue.clear()
        self._decode.restart(state["decode"])
        if not state["queued"]:
            self.reader.load_state_dict(state["reader"])
        for saved in state["queued"]:
            self.reader.load_state_dict(saved["reader"])
            draws = [(kind, count) for kind, count in saved["draws"]]
            batch = _Queued(saved["reader"], draws, self._draw(draws), list(saved["placeholders"]))
            self._decode.submit(batch.images())
            self._queue.append(batch)
        if self._queue:
            self._queue[0].taken = state["taken"]

    def load_rescaled_state_dicts(self, states: list[dict]) -> None:
        """Continue from every old rank's state of a run with another world size: their queued
        batches were not trained on, and their ``reader`` states count them unread."""
        self._queue.clear()
        self.reader.load_rescaled_state_dicts([state["reader"] for state in states])

    def close(self) -> None:
        self.reader.close()
