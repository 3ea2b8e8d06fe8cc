"""What the training loop takes from the data side: one batch per stream per step.

The loaders (DALI pipelines over static or growing streams) and any in-memory source used in
tests implement ``BatchSource``; the mixing step and the loop only see this protocol.
"""

from dataclasses import dataclass, field
from typing import Protocol

import torch

from trainers.errors import TrainError


@dataclass
class StreamBatch:
    """One stream's part of a step: normalised float images (N, C, H, W), int64 labels (N,) and, for
    interchange intervention training, the samples' causal variables (N, variables) int64; a paired
    stream's batch also holds each sample's counterfactual partner (image and class, row for row)."""

    images: torch.Tensor
    labels: torch.Tensor
    values: torch.Tensor | None = None
    partner_images: torch.Tensor | None = None
    partner_labels: torch.Tensor | None = None

    @property
    def rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The images and labels the step trains on: the samples, then their partners where the batch has them."""
        if self.partner_images is None:
            return self.images, self.labels
        return torch.cat([self.images, self.partner_images]), torch.cat([self.labels, self.partner_labels])


@dataclass
class StreamStats:
    """Running counts of one stream's loader (exported as metrics by the cluster layer)."""

    samples: int = 0
    bad_samples: int = 0
    reused_batches: int = 0
    skipped_batches: int = 0
    wait_s: float = 0.0
    backlog: int = 0
    extra: dict[str, float] = field(default_factory=dict)


def check_partner_classes(stream: str, labels: torch.Tensor, partner_labels: torch.Tensor, where: list[str] | None = None) -> None:
    """Raise TrainError unless every partner (labels on the host) has another class than its sample: a counterfactual
    flips the label. ``where`` names the samples (default: their row)."""
    same = (partner_labels == labels).nonzero().flatten().tolist()
    if same:
        sample = where[same[0]] if where is not None else same[0]
        raise TrainError(f"stream {stream}: sample {sample}'s counterfactual partner has its own class "
                         f"{labels[same[0]].item()} ({len(same)} such pairs); a pair's classes must differ")


class BatchSource(Protocol):
    """A stream's batches, each of exactly that stream's configured batch size.

    ``next_batch`` applies the stream's ``when_short`` policy itself: it waits (raising TrainError
    after the timeout), reuses committed data, or returns None to skip the stream this step.
    """

    stream: str
    stats: StreamStats

    def next_batch(self) -> StreamBatch | None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...

    def close(self) -> None: ...
