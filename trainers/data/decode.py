"""Decoding on DALI, ahead of the step: decoded rows, the undecodable-image probe, and the decode
stage that growing streams feed.

Why bad images need a recovery path: DALI decodes a whole batch at once and has no way to drop
one undecodable image; a corrupt JPEG fails the batch and leaves the pipeline invalid ("Current
pipeline object is no longer valid", NVIDIA/DALI#3913, #309; measured here with DALI 2.4 for
garbage, truncated JPEG and truncated PNG: always an exception, never a hang). So a pipeline runs
its batches ahead untouched, and only when a batch fails is it rebuilt from the DALI checkpoint
taken before that batch, the batch's images probed one by one, and the batch decoded again with
each bad image replaced by ``PLACEHOLDER``; its row comes back flagged (``DecodedRows.bad``) and
the batch source drops, counts or refuses it. Undecodable images are rare (``prepare`` and
datagen write only decodable ones), so the clean path never probes.
"""

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from nvidia.dali import fn, pipeline_def
from nvidia.dali.plugin.pytorch import feed_ndarray
from PIL import Image

from shards.errors import SampleError
from shards.sample import decode_class
from trainers.data.augment import Augment, decoder_device, train_transform
from trainers.data.config import LoaderConfig

_INPUT = "encoded"
# The label of a sample whose ``cls`` is not a class index (or that was not read whole): the
# batch source counts it as a bad sample.
UNREADABLE_LABEL = -1
UNREADABLE = "unreadable sample (short read or non-decimal cls)"
UNDECODABLE = "undecodable image"


def _placeholder_png() -> np.ndarray:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    return np.frombuffer(buffer.getvalue(), np.uint8)


# What a pipeline decodes in place of an image it must not decode (undecodable, or not read
# whole): a tiny valid PNG, so the rest of the batch decodes as it would have.
PLACEHOLDER = _placeholder_png()


@dataclass(frozen=True)
class EncodedSample:
    """One sample before decoding: encoded image bytes, its label, and where it came from."""

    image: np.ndarray
    label: int
    where: str


def read_label(raw: bytes, where: str) -> int:
    """The class index of a ``cls`` field, or ``UNREADABLE_LABEL`` if it is not one."""
    try:
        return decode_class(raw, where)
    except SampleError:
        return UNREADABLE_LABEL


@dataclass
class DecodedRows:
    """Decoded samples in order: images (N, C, H, W) float32 on the stream's device, labels (N,)
    int64 on the CPU, where each came from, the rows the batch source must refuse (row -> reason) and,
    where the stream reads them, the samples' causal variables (N, variables) int64 on the CPU and their
    counterfactual partners (rows of their own, row for row)."""

    images: torch.Tensor
    labels: torch.Tensor
    where: list[str]
    bad: dict[int, str] = field(default_factory=dict)
    values: torch.Tensor | None = None
    partners: "DecodedRows | None" = None

    def __len__(self) -> int:
        return len(self.where)

    def rows(self, start: int, stop: int) -> "DecodedRows":
        """Rows ``start:stop`` (views of the images, no copy)."""
        bad = {row - start: reason for row, reason in self.bad.items() if start <= row < stop}
        values = None if self.values is None else self.values[start:stop]
        partners = None if self.partners is None else self.partners.rows(start, stop)
        return DecodedRows(self.images[start:stop], self.labels[start:stop], self.where[start:stop], bad, values, partners)

    def good(self) -> "DecodedRows":
        """The rows without the bad ones (itself when none is bad)."""
        if not self.bad:
            return self
        return self._select([row for row in range(len(self)) if row not in self.bad])

    def _select(self, keep: list[int]) -> "DecodedRows":
        index = torch.tensor(keep, dtype=torch.int64)
        return DecodedRows(self.images[index.to(self.images.device)], self.labels[index], [self.where[row] for row in keep],
                           values=None if self.values is None else self.values[index],
                           partners=None if self.partners is None else self.partners._select(keep))


def concatenate(parts: Sequence[DecodedRows]) -> DecodedRows:
    """One ``DecodedRows`` of ``parts`` in order (no copy for a single part)."""
    if len(parts) == 1:
        return parts[0]
    bad, offset = {}, 0
    for part in parts:
        bad.update({offset + row: reason for row, reason in part.bad.items()})
        offset += len(part)
    values = None if parts[0].values is None else torch.cat([part.values for part in parts])
    partners = None if parts[0].partners is None else concatenate([part.partners for part in parts])
    return DecodedRows(torch.cat([part.images for part in parts]), torch.cat([part.labels for part in parts]),
                       [where for part in parts for where in part.where], bad, values, partners)


def device_id(device: str) -> int | None:
    """The DALI ``device_id`` of a torch device string (None: a CPU-only pipeline)."""
    if not device.startswith("cuda"):
        return None
    index = torch.device(device).index
    return torch.cuda.current_device() if index is None else index


def to_torch(images, device: str) -> torch.Tensor:
    """A DALI batch of equally shaped float32 images as one torch tensor on ``device`` (a copy:
    DALI reuses its output buffers)."""
    dense = images.as_tensor()
    out = torch.empty(dense.shape(), dtype=torch.float32, device=device)
    feed_ndarray(dense, out, cuda_stream=torch.cuda.current_stream() if out.is_cuda else None)
    return out


def is_decodable(image: np.ndarray, device: str) -> bool:
    """Whether one encoded image decodes alone (a one-sample pipeline: the bad-batch path only)."""

    @pipeline_def(batch_size=1, num_threads=1, device_id=device_id(device))
    def probe():
        return fn.decoders.image(fn.external_source(name=_INPUT), device=decoder_device(device))

    pipe = probe()
    pipe.build()
    pipe.feed_input(_INPUT, [image])
    try:
        pipe.run()
    except RuntimeError:
        return False
    return True


class DecodeStage:
    """Decodes and augments batches of encoded images handed to it ahead of need.

    ``submit`` feeds a batch and schedules it, so DALI decodes it on its own threads while the
    caller trains; ``collect`` returns the oldest submitted batch. Batches may be smaller than
    ``batch_size`` (refills). The DALI prefetch depth is 1 because the caller keeps the queue:
    a fed pipeline with a deeper one would have to be fed that many batches before its first
    run, and a growing stream may not hold them yet.

    Args:
        batch_size: the largest batch.
        augment: the stream's training augmentation.
        loader: sizes, normalisation, threads.
        device: ``cpu`` or ``cuda[:i]``; CUDA decodes with DALI's ``mixed`` decoder.
        seed: seed of the augmentation randomness.
    """

    def __init__(self, batch_size: int, augment: Augment, loader: LoaderConfig, device: str, seed: int):
        self.batch_size = batch_size
        self.augment = augment
        self.loader = loader
        self.device = device
        self.seed = seed
        self.restart(checkpoint=None)

    def restart(self, checkpoint: str | None) -> None:
        """A fresh pipeline at ``checkpoint`` (None: the start); anything submitted is dropped."""

        @pipeline_def(
            batch_size=self.batch_size,
            num_threads=self.loader.num_threads,
            device_id=device_id(self.device),
            seed=self.seed,
            prefetch_queue_depth=1,
            enable_checkpointing=True,
        )
        def pipeline():
            return train_transform(fn.external_source(name=_INPUT), self.augment, self.loader, self.device)

        self._pipe = pipeline(checkpoint=checkpoint)
        self._pipe.build()

    def submit(self, images: list[np.ndarray]) -> None:
        """Feed one batch of encoded images and start decoding it (returns at once)."""
        self._pipe.feed_input(_INPUT, images)
        self._pipe.schedule_run()

    def collect(self) -> torch.Tensor:
        """The oldest submitted batch, decoded: (N, C, H, W) float32 on ``device``.

        Raises:
            RuntimeError: DALI could not decode the batch (the pipeline is invalid until ``restart``).
        """
        (images,) = self._pipe.outputs()
        try:
            return to_torch(images, self.device)
        finally:
            self._pipe.release_outputs()

    def checkpoint(self) -> str:
        """The augmentation randomness after the collected batches (batches still decoding are
        not in it: DALI checkpoints the position of what was handed out)."""
        return self._pipe.checkpoint()
