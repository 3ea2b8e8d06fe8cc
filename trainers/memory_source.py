"""A ``BatchSource`` over tensors held in memory: deterministic, shardable and resumable.

For unit tests, demos and benchmarks of the mixing step without shards or DALI. Each rank reads
the disjoint slice ``rank::world_size`` of the data, reshuffled every epoch from ``seed``.
"""

import time

import torch

from trainers.batches import StreamBatch, StreamStats, check_partner_classes
from trainers.errors import TrainError


class MemorySource:
    """Batches of ``batch_size`` drawn without replacement, epoch after epoch."""

    def __init__(
        self,
        stream: str,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        values: torch.Tensor | None = None,
        partners: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        """Args:
        stream: the stream's name.
        images: (N, C, H, W) float images of the whole stream (every rank passes the same).
        labels: (N,) int64 labels.
        batch_size: samples per batch; this rank's slice must hold at least one batch.
        rank, world_size: which disjoint slice this source reads.
        seed: seeds the per-epoch shuffle (the same on every rank).
        values: (N, variables) int64 causal variables of the samples, or None.
        partners: each sample's counterfactual partner, (N, C, H, W) images and (N,) labels that all differ
            from the samples' (a paired stream), or None.
        """
        self.stream = stream
        self.stats = StreamStats()
        self.images = images[rank::world_size]
        self.labels = labels[rank::world_size]
        self.values = None if values is None else values[rank::world_size]
        if partners is not None:
            check_partner_classes(stream, labels, partners[1])
        self.partners = None if partners is None else tuple(tensor[rank::world_size] for tensor in partners)
        # Indices into the whole stream, so callers can see which samples a rank read.
        self.ids = torch.arange(len(labels))[rank::world_size]
        self.last_ids = torch.empty(0, dtype=torch.int64)
        if len(self.labels) < batch_size:
            raise TrainError(
                f"stream {stream}: rank {rank} holds {len(self.labels)} samples, fewer than batch_size {batch_size}; "
                "give it more data or a smaller batch"
            )
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        self.position = 0
        self.order = self._order()

    def _order(self) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(len(self.labels), generator=generator)

    def next_batch(self) -> StreamBatch:
        """The next batch; drops an epoch's incomplete tail so every batch is full."""
        started = time.perf_counter()
        if self.position + self.batch_size > len(self.order):
            self.epoch += 1
            self.position = 0
            self.order = self._order()
        rows = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        self.last_ids = self.ids[rows]
        self.stats.samples += self.batch_size
        self.stats.wait_s += time.perf_counter() - started
        partner_images, partner_labels = (None, None) if self.partners is None else (tensor[rows] for tensor in self.partners)
        return StreamBatch(self.images[rows], self.labels[rows], None if self.values is None else self.values[rows],
                           partner_images, partner_labels)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "samples": self.stats.samples}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position, self.stats.samples = state["epoch"], state["position"], state["samples"]
        self.order = self._order()

    def close(self) -> None:
        """Nothing to release: the tensors belong to the caller."""


def colour_classes(count: int, num_classes: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A tiny learnable task: each class is a fixed random colour, plus pixel noise.

    Returns:
        images (count, 3, size, size) float32 and labels (count,) int64.
    """
    generator = torch.Generator().manual_seed(seed)
    colours = torch.randn(num_classes, 3, 1, 1, generator=generator)
    labels = torch.randint(num_classes, (count,), generator=generator)
    images = colours[labels] + 0.5 * torch.randn(count, 3, size, size, generator=generator)
    return images, labels


class MemorySourceFactory:
    """A ``SourceFactory`` over in-memory datasets, one per stream (picklable, for Ray workers)."""

    def __init__(self, datasets: dict[str, tuple[torch.Tensor, torch.Tensor]], seed: int = 0) -> None:
        self.datasets, self.seed = datasets, seed

    def __call__(self, stream: str, config, rank: int, world_size: int, device: torch.device) -> MemorySource:
        images, labels = self.datasets[stream]
        return MemorySource(stream, images, labels, config.batch_size, rank, world_size, self.seed)
