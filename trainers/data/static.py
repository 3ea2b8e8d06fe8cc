"""Reading a static stream (written once) with DALI's webdataset reader.

The shard list comes from the manifest (never from listing the directory), with the store's
``.idx`` files, so the reader starts without scanning tars. Each rank reads its own part
(``shard_id``/``num_shards``), samples are shuffled in a buffer, and the order of tars is
reshuffled every epoch with a seed shared by all ranks (so the parts stay disjoint).
The reader only reads bytes; decoding happens in ``DecodeStage``, where bad images can be dropped.
"""

import math
from pathlib import Path

from nvidia.dali import fn, pipeline_def

from shards.names import index_file_name
from shards.reader import check_committed_shards
from trainers.data.bad_data import damaged_shards_error
from trainers.data.config import LoaderConfig
from trainers.data.decode import EncodedSample, read_label
from trainers.errors import TrainError

_READER = "reader"


class StaticReader:
    """Encoded samples of one rank's part of a static stream, epoch after epoch.

    Position: the DALI reader's checkpoint taken before its current batch, plus how many samples
    of that batch were handed out; restoring re-reads that batch and drops those.

    Args:
        stream: stream name (for messages).
        stream_dir: the stream's directory (holds the manifest).
        batch_size: samples the DALI reader returns per run.
        loader: threads, shuffle buffer, prefetch depth, bad-sample policy.
        rank, world_size: this reader's part of the stream.
        seed: shuffle seed (tar order is shuffled with ``seed`` on every rank).
    """

    def __init__(self, stream: str, stream_dir: Path, batch_size: int, loader: LoaderConfig,
                 rank: int, world_size: int, seed: int):
        # The store's reader checks: a damaged shard (missing, truncated, not a regular file, without a
        # valid index, breaking the sample contract) is never handed to DALI, whose reader would fail
        # on it mid-epoch or read whatever its index points at.
        intact, damaged = check_committed_shards(stream_dir)
        if damaged and loader.on_bad_sample == "fail":
            raise damaged_shards_error(stream, damaged)
        if not intact:
            raise TrainError(f"stream {stream}: no readable committed shards in {stream_dir}; prepare or generate it first")
        self.stream = stream
        self.damaged_samples = sum(shard.record.samples for shard in damaged)
        self.batch_size = batch_size
        self.loader = loader
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self._paths = [str(path) for path, _ in intact]
        self._index_paths = [str(path.with_name(index_file_name(path.name))) for path, _ in intact]
        total = sum(record.samples for _, record in intact)
        self.epoch_samples = math.ceil(total / world_size)
        self._pipe = self._build(checkpoint=None)
        self._batch_checkpoint = self._pipe.checkpoint()
        self._pending: list[EncodedSample] = []
        self._taken_from_batch = 0

    def _build(self, checkpoint: str | None):
        @pipeline_def(
            batch_size=self.batch_size,
            num_threads=1,  # reading only; decoding threads live in the decode stage
            device_id=None,
            seed=self.seed + self.rank,
            prefetch_queue_depth=self.loader.prefetch_queue_depth,
            enable_checkpointing=True,
        )
        def pipeline():
            return tuple(fn.readers.webdataset(
                paths=self._paths,
                index_paths=self._index_paths,
                ext=["jpg;png", "cls"],
                missing_component_behavior="skip",
                shard_id=self.rank,
                num_shards=self.world_size,
                random_shuffle=True,
                initial_fill=self.loader.shuffle_buffer,
                shuffle_after_epoch=True,
                shuffle_after_epoch_seed=self.seed,
                name=_READER,
            ))

        pipe = pipeline(checkpoint=checkpoint)
        pipe.build()
        return pipe

    def _read_batch(self) -> None:
        self._batch_checkpoint = self._pipe.checkpoint()
        images, labels = self._pipe.run()
        self._pending = []
        for i in range(len(images)):
            where = images[i].source_info()
            self._pending.append(EncodedSample(images.at(i).copy(), read_label(bytes(labels.at(i)), where), where))
        self._taken_from_batch = 0

    def take(self, count: int) -> list[EncodedSample]:
        """The next ``count`` samples (``UNREADABLE_LABEL`` marks a ``cls`` that is not a class index)."""
        out: list[EncodedSample] = []
        while len(out) < count:
            if self._taken_from_batch == len(self._pending):
                self._read_batch()
            end = min(len(self._pending), self._taken_from_batch + count - len(out))
            out += self._pending[self._taken_from_batch:end]
            self._taken_from_batch = end
        return out

    def state_dict(self) -> dict:
        return {"checkpoint": self._batch_checkpoint, "taken_from_batch": self._taken_from_batch}

    def load_state_dict(self, state: dict) -> None:
        self._pipe = self._build(checkpoint=state["checkpoint"])
        self._batch_checkpoint = state["checkpoint"]
        self._pending, self._taken_from_batch = [], 0
        if state["taken_from_batch"]:
            self._read_batch()
            self._taken_from_batch = state["taken_from_batch"]
