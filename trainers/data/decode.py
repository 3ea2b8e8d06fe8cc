"""The decode stage: a DALI pipeline fed encoded samples through ``fn.external_source``.

Why reading and decoding are separate pipelines: DALI decodes a whole batch at once and has no
way to drop one undecodable image; a corrupt JPEG fails the batch and leaves the pipeline
invalid ("Current pipeline object is no longer valid", NVIDIA/DALI#3913, #309; measured here
with DALI 2.4 for garbage, truncated JPEG and truncated PNG: always an exception, never a hang).
So the readers hand over encoded bytes, and when a batch fails this stage rebuilds its pipeline
from the checkpoint taken just before that batch (augmentation randomness continues as if the
batch had not failed), finds the bad samples with a one-sample probe pipeline, and reports them;
the caller drops or refuses them and refills the batch.
"""

from dataclasses import dataclass

import numpy as np
import torch
from nvidia.dali import fn, pipeline_def
from nvidia.dali.plugin.pytorch import feed_ndarray

from shards.errors import SampleError
from shards.sample import decode_class
from trainers.data.augment import Augment, decoder_device, train_transform
from trainers.data.config import LoaderConfig
from trainers.errors import TrainError

_INPUT = "encoded"
# The label of a sample whose ``cls`` is not a class index (or that was not read whole): the
# batch source counts it as a bad sample.
UNREADABLE_LABEL = -1


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


def _device_id(device: str) -> int | None:
    if not device.startswith("cuda"):
        return None
    index = torch.device(device).index
    return torch.cuda.current_device() if index is None else index


class DecodeStage:
    """Decodes and augments batches of encoded samples into normalised float NCHW tensors.

    Args:
        batch_size: samples per batch (every call gets exactly this many).
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
        self._pipe = self._build(checkpoint=None)

    def _build(self, checkpoint: str | None):
        @pipeline_def(
            batch_size=self.batch_size,
            num_threads=self.loader.num_threads,
            device_id=_device_id(self.device),
            seed=self.seed,
            prefetch_queue_depth=1,  # fed one batch at a time; nothing to prefetch
            enable_checkpointing=True,
        )
        def pipeline():
            return train_transform(fn.external_source(name=_INPUT), self.augment, self.loader, self.device)

        pipe = pipeline(checkpoint=checkpoint)
        pipe.build()
        return pipe

    def _probe_is_decodable(self, sample: EncodedSample) -> bool:
        @pipeline_def(batch_size=1, num_threads=1, device_id=_device_id(self.device))
        def probe():
            return fn.decoders.image(fn.external_source(name=_INPUT), device=decoder_device(self.device))

        pipe = probe()
        pipe.build()
        pipe.feed_input(_INPUT, [sample.image])
        try:
            pipe.run()
        except RuntimeError:
            return False
        return True

    def run(self, samples: list[EncodedSample]) -> torch.Tensor | list[int]:
        """Decode and augment one batch.

        Returns:
            The images (N, C, H, W) float32 on ``device``, or, when some samples cannot be
            decoded, their positions in ``samples`` (nothing is consumed from the augmentation
            randomness then, so a refilled batch continues the same random sequence).

        Raises:
            TrainError: the batch failed but every sample decodes alone (not a data problem).
        """
        before = self._pipe.checkpoint()
        self._pipe.feed_input(_INPUT, [sample.image for sample in samples])
        try:
            (images,) = self._pipe.run()
        except RuntimeError as error:
            self._pipe = self._build(checkpoint=before)
            bad = [i for i, sample in enumerate(samples) if not self._probe_is_decodable(sample)]
            if not bad:
                raise TrainError(f"decoding a batch failed though each image decodes alone: {error}") from error
            return bad
        dense = images.as_tensor()
        out = torch.empty(dense.shape(), dtype=torch.float32, device=self.device)
        feed_ndarray(dense, out, cuda_stream=torch.cuda.current_stream() if out.is_cuda else None)
        return out

    def state_dict(self) -> dict:
        """The augmentation randomness position (a DALI pipeline checkpoint)."""
        return {"checkpoint": self._pipe.checkpoint()}

    def load_state_dict(self, state: dict) -> None:
        self._pipe = self._build(checkpoint=state["checkpoint"])
