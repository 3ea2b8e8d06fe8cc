"""Reading a static stream (written once): one DALI pipeline reads, decodes and augments it.

The shard list comes from the manifest (never from listing the directory), with the store's
``.idx`` files, so the reader starts without scanning tars. Each rank reads its own part
(``shard_id``/``num_shards``), samples are shuffled in a buffer, and the order of tars is
reshuffled every epoch with a seed shared by all ranks (so the parts stay disjoint).

DALI's webdataset reader feeds the decoder inside the same graph and the pipeline prefetches
``train.data.prefetch_queue_depth`` batches, so the next batch decodes while the model trains on
this one. To drop an undecodable image (see ``trainers.data.decode``) the graph decodes, per
sample, either the image read or ``PLACEHOLDER``, as a per-iteration external source says: it
says "the image" for every sample, except when a failed batch is decoded again from the
checkpoint taken before it, first with placeholders for all its samples (to get their encoded
bytes for the probe, with nothing decoded), then for its bad ones only.
"""

import math
from pathlib import Path

import numpy as np
import torch
from nvidia.dali import fn, pipeline_def, types

from shards.causal_values import decode_causal_values
from shards.errors import SampleError
from shards.index import parse_index
from shards.locations import S3Url
from shards.names import index_file_name
from shards.sample import PARTNER_CLASS, PARTNER_IMAGE_EXTENSIONS
from shards.stores import check_committed_shards
from trainers.batches import check_partner_classes
from trainers.data.augment import Augment, paired_train_transform, train_transform
from trainers.data.bad_data import damaged_shards_error
from trainers.data.config import LoaderConfig
from trainers.data.decode import (
    PLACEHOLDER,
    UNDECODABLE,
    UNREADABLE,
    UNREADABLE_LABEL,
    DecodedRows,
    device_id,
    is_decodable,
    read_label,
    to_torch,
)
from trainers.errors import TrainError

_READER = "reader"


class StaticReader:
    """Decoded samples of one rank's part of a static stream, epoch after epoch.

    Position: the DALI pipeline's checkpoint taken before its current batch (the reader's place
    and the augmentation randomness), how many rows of that batch were handed out, and which of its
    samples were replaced by placeholders; restoring decodes that batch again and drops those rows.

    Args:
        stream: stream name (for messages).
        stream_dir: the stream's directory (holds the manifest) or ``s3://`` prefix (read from copies on this node).
        batch_size: samples per pipeline batch.
        augment: the stream's training augmentation.
        loader: threads, shuffle buffer, prefetch depth, bad-sample policy.
        device: ``cpu`` or ``cuda[:i]``; CUDA decodes with DALI's ``mixed`` decoder.
        rank, world_size: this reader's part of the stream.
        seed: shuffle seed (tar order is shuffled with ``seed`` on every rank; the sample order and
            the augmentation randomness with ``seed + rank``).
        variables: causal variables to read from each sample's json (``shards.causal_values``), in order;
            empty: read no json.
        pairs: also read each sample's counterfactual partner (``shards.sample``'s ``cf.*`` fields), decoded
            and augmented with the sample's own crop and flip; the rows' ``partners`` hold them.
    """

    def __init__(self, stream: str, stream_dir: "Path | S3Url", batch_size: int, augment: Augment, loader: LoaderConfig,
                 device: str, rank: int, world_size: int, seed: int, variables: tuple[str, ...] = (), pairs: bool = False):
        # The store's reader checks: a damaged shard (missing, truncated, not a regular file, without a
        # valid index, breaking the sample contract) is never handed to DALI, whose reader would fail
        # on it mid-epoch or read whatever its index points at.
        # A stream on object storage is read from copies on this node (shards.s3_staging): DALI's own S3
        # path fetches per sample, about 0.01 of local disk.
        intact, damaged = check_committed_shards(stream_dir, stage=True)
        if damaged and loader.on_bad_sample == "fail":
            raise damaged_shards_error(stream, damaged)
        if not intact:
            raise TrainError(f"stream {stream}: no readable committed shards in {stream_dir}; prepare or generate it first")
        self.stream = stream
        self.damaged_samples = sum(shard.record.samples for shard in damaged)
        self.batch_size = batch_size
        self.augment = augment
        self.loader = loader
        self.device = device
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.variables = tuple(variables)
        self.pairs = pairs
        self._paths = [str(path) for path, _ in intact]
        # A staged copy's samples are named by the object they came from, in messages and in ``where``.
        self._origins = {str(path): str(stream_dir / record.name) for path, record in intact if isinstance(stream_dir, S3Url)}
        self._index_paths = [str(path.with_name(index_file_name(path.name))) for path, _ in intact]
        if pairs:
            self._check_partners()
        total = sum(record.samples for _, record in intact)
        self.epoch_samples = math.ceil(total / world_size)
        self.failed_batches = 0  # batches that took the rebuild-and-probe path
        self._scheduled = -1  # the last iteration DALI has asked the placeholder source for
        # Iteration -> samples decoded as placeholders (only a failed batch and its retries have any).
        self._placeholders: dict[int, list[int]] = {}
        self._iteration = 0  # the iteration the pending batch came from (or the next run returns)
        self._pipe = self._build(checkpoint=None)
        self._batch_checkpoint = self._pipe.checkpoint()
        self._pending: DecodedRows | None = None
        self._taken_from_batch = 0

    def _placeholder_choice(self, info) -> list[np.ndarray]:
        self._scheduled = max(self._scheduled, info.iteration)
        placeholders = set(self._placeholders.get(info.iteration, ()))
        return [np.array(row in placeholders) for row in range(self.batch_size)]

    def _build(self, checkpoint: str | None):
        @pipeline_def(
            batch_size=self.batch_size,
            num_threads=self.loader.num_threads,
            device_id=device_id(self.device),
            # Its first operator, the reader, draws the same seed from it as the reading-only pipeline
            # before it did, so a stream's sample order is what it was.
            seed=self.seed + self.rank,
            prefetch_queue_depth=self.loader.prefetch_queue_depth,
            enable_checkpointing=True,
            enable_conditionals=True,
        )
        def pipeline():
            encoded, label, *rest = fn.readers.webdataset(
                paths=self._paths,
                index_paths=self._index_paths,
                ext=["jpg;png", "cls", *(["json"] if self.variables else []),
                     *([";".join(PARTNER_IMAGE_EXTENSIONS), PARTNER_CLASS] if self.pairs else [])],
                missing_component_behavior="skip",
                shard_id=self.rank,
                num_shards=self.world_size,
                random_shuffle=True,
                initial_fill=self.loader.shuffle_buffer,
                shuffle_after_epoch=True,
                shuffle_after_epoch_seed=self.seed,
                name=_READER,
            )
            # A callable of the iteration: DALI checkpoints it by its iteration count.
            placeholder = fn.external_source(source=self._placeholder_choice, batch=True, batch_info=True)
            record, partner = rest[: len(rest) - 2 * self.pairs], rest[len(rest) - 2 * self.pairs :]
            if placeholder:
                decoded_input = types.Constant(PLACEHOLDER, device="cpu")
                partner_input = types.Constant(PLACEHOLDER, device="cpu")
            else:
                decoded_input = encoded
                partner_input = partner[0] if self.pairs else encoded
            if not self.pairs:
                return train_transform(decoded_input, self.augment, self.loader, self.device), label, encoded, *record
            # One crop seed for both croppers, fixed by the pipeline's: DALI checkpoints their state like any operator's.
            images, partner_images = paired_train_transform(decoded_input, partner_input, self.augment, self.loader, self.device,
                                                            crop_seed=(self.seed + self.rank) * 2 + 1)
            return images, label, encoded, *record, partner_images, partner[1]

        pipe = pipeline(checkpoint=checkpoint)
        pipe.build()
        return pipe

    def _run(self) -> tuple:
        images, labels, encoded, *rest = self._pipe.run()
        if self.pairs:  # the partner's images go to torch too; its labels stay DALI's
            rest[-2] = to_torch(rest[-2], self.device)
        return to_torch(images, self.device), labels, encoded, rest

    def _recover(self, before: str, error: RuntimeError) -> tuple:
        """Decode the batch that failed again, with placeholders for its undecodable images."""
        self.failed_batches += 1
        self._placeholders[self._iteration] = list(range(self.batch_size))
        self._pipe = self._build(checkpoint=before)
        encoded = self._pipe.run()[2]
        bad = [row for row in range(len(encoded)) if not is_decodable(np.array(encoded[row]), self.device)]
        if not bad:
            raise TrainError(f"stream {self.stream}: decoding a batch failed though each image decodes alone: {error}") from error
        self._placeholders[self._iteration] = bad
        self._pipe = self._build(checkpoint=before)
        try:
            return self._run()
        except RuntimeError as again:
            raise TrainError(f"stream {self.stream}: a batch failed again with its undecodable images replaced: {again}") from again

    def _read_batch(self) -> None:
        # A checkpoint costs ~10 us (DALI keeps one per iteration); it is what a restore and a
        # failed batch restart from.
        self._batch_checkpoint = before = self._pipe.checkpoint()
        self._placeholders = {iteration: rows for iteration, rows in self._placeholders.items() if iteration >= self._iteration}
        try:
            images, labels, encoded, rest = self._run()
        except RuntimeError as error:
            images, labels, encoded, rest = self._recover(before, error)
        record, partner = rest[: len(rest) - 2 * self.pairs], rest[len(rest) - 2 * self.pairs :]
        where = [self._origin(encoded[row].source_info()) for row in range(len(encoded))]
        classes = [read_label(bytes(labels.at(row)), where[row]) for row in range(len(where))]
        bad = {row: UNDECODABLE for row in self._placeholders.get(self._iteration, ())}
        bad.update({row: UNREADABLE for row, value in enumerate(classes) if value == UNREADABLE_LABEL})
        values = self._causal_values(record[0], where) if record else None
        partners = self._partners(*partner, classes, where, bad) if partner else None
        self._pending = DecodedRows(images, torch.tensor(classes, dtype=torch.int64), where, bad, values, partners)
        self._taken_from_batch = 0

    def _origin(self, source_info: str) -> str:
        """DALI's ``<tar>:<offset>:<member>`` with a staged copy's path replaced by its object's URL."""
        tar, separator, rest = source_info.partition(".tar:")
        return f"{self._origins[tar + '.tar']}:{rest}" if separator and tar + ".tar" in self._origins else source_info

    def _check_partners(self) -> None:
        """A TrainError unless the stream's samples carry partners (DALI would skip every sample without them)."""
        where = self._index_paths[0]
        first = parse_index(Path(where).read_text(), where)[0]
        if PARTNER_CLASS not in {member.extension for member in first}:
            raise TrainError(f"stream {self.stream}: pairs is true but its samples carry no counterfactual partner "
                             f"({PARTNER_CLASS} missing in {Path(where).name}); generate it with datagen.strategy.pairs or set pairs: false")

    def _partners(self, images: torch.Tensor, labels, classes: list[int], where: list[str], bad: dict[int, str]) -> DecodedRows:
        """The partners' rows; a partner whose class is unreadable makes its sample's row bad (in ``bad``), one of
        the sample's own class is a TrainError (a pair's classes must differ)."""
        partner_classes = [read_label(bytes(labels.at(row)), where[row]) for row in range(len(where))]
        bad.update({row: UNREADABLE for row, value in enumerate(partner_classes) if value == UNREADABLE_LABEL})
        readable = [row for row in range(len(where)) if row not in bad]
        check_partner_classes(self.stream, torch.tensor([classes[row] for row in readable], dtype=torch.int64),
                              torch.tensor([partner_classes[row] for row in readable], dtype=torch.int64), [where[row] for row in readable])
        return DecodedRows(images, torch.tensor(partner_classes, dtype=torch.int64), where)

    def _causal_values(self, records, where: list[str]) -> torch.Tensor:
        """(N, variables) int64: each sample's causal variables from its json; a TrainError naming the first
        sample without them (a stream trained with a causal model must hold every sample's variables)."""
        try:
            return torch.tensor([decode_causal_values(bytes(records.at(row)), self.variables, where[row]) for row in range(len(where))],
                                dtype=torch.int64)
        except SampleError as error:
            raise TrainError(f"stream {self.stream}: {error}") from None

    def take(self, count: int) -> DecodedRows:
        """The next rows, at most ``count``, of the current batch (the next one once it is used up)."""
        if self._pending is None or self._taken_from_batch == len(self._pending):
            if self._pending is not None:
                self._iteration += 1
            self._read_batch()
        start = self._taken_from_batch
        self._taken_from_batch = min(len(self._pending), start + count)
        return self._pending.rows(start, self._taken_from_batch)

    @property
    def pipeline(self):
        """The DALI pipeline: reader, decoder and augmentation in one graph."""
        return self._pipe

    @property
    def batches_ahead(self) -> int:
        """Batches DALI has been asked to prepare beyond the one being handed out."""
        current = self._iteration if self._pending is not None else self._iteration - 1
        return self._scheduled - current

    def state_dict(self) -> dict:
        if self._pending is not None and self._taken_from_batch == len(self._pending):
            # The common case: the batch is used up, so the position is the next batch's start.
            checkpoint, iteration, taken = self._pipe.checkpoint(), self._iteration + 1, 0
        else:
            checkpoint, iteration, taken = self._batch_checkpoint, self._iteration, self._taken_from_batch
        return {"checkpoint": checkpoint, "iteration": iteration, "taken_from_batch": taken,
                "placeholders": list(self._placeholders.get(iteration, []))}

    def load_state_dict(self, state: dict) -> None:
        self._iteration = state["iteration"]
        self._placeholders = {self._iteration: list(state["placeholders"])} if state["placeholders"] else {}
        self._pipe = self._build(checkpoint=state["checkpoint"])
        self._batch_checkpoint = state["checkpoint"]
        self._pending, self._taken_from_batch = None, 0
        if state["taken_from_batch"]:
            self._read_batch()
            self._taken_from_batch = state["taken_from_batch"]
