"""Top-k accuracy over sets of accepted classes, and ImageNet-C corruption error arithmetic.

A plain set accepts one class per image; an ObjectNet image accepts every ImageNet class its
folder maps to (113 folders -> 125 classes). Both are scored by one rule: a prediction is a hit
when any accepted class is among the top k logits.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import fmean

import torch

TOP_K = (1, 5)
IMAGENET_C_SEVERITIES = (1, 2, 3, 4, 5)


def accepted_classes(labels: torch.Tensor, num_classes: int, label_classes: torch.Tensor | None = None) -> torch.Tensor:
    """The (N, num_classes) boolean mask of classes each image accepts.

    Args:
        labels: (N,) int64 labels of the set (class indices, or row indices into ``label_classes``).
        num_classes: width of the model's logits.
        label_classes: optional (L, num_classes) boolean mask, row l = classes that label l accepts.
    Returns:
        The mask; one-hot rows when ``label_classes`` is None.
    """
    if label_classes is None:
        return torch.nn.functional.one_hot(labels, num_classes).bool()
    return label_classes[labels]


def topk_hits(logits: torch.Tensor, accepted: torch.Tensor, ks: Sequence[int] = TOP_K) -> dict[int, torch.Tensor]:
    """Per-image hits: whether any accepted class is among the k highest logits.

    Args:
        logits: (N, C) model outputs.
        accepted: (N, C) boolean mask of accepted classes.
        ks: the k values (each clipped to C).
    Returns:
        k -> (N,) boolean hits.
    """
    ranked = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    accepted_ranked = accepted.gather(1, ranked)
    return {k: accepted_ranked[:, :k].any(dim=1) for k in ks}


@dataclass
class TopKCounter:
    """Running hit counts over the batches of one set."""

    ks: Sequence[int] = TOP_K
    samples: int = 0
    hits: dict[int, int] = field(default_factory=dict)

    def update(self, logits: torch.Tensor, accepted: torch.Tensor) -> None:
        """Count one batch's hits (logits and accepted masks as for ``topk_hits``)."""
        for k, hit in topk_hits(logits, accepted, self.ks).items():
            self.hits[k] = self.hits.get(k, 0) + int(hit.sum())
        self.samples += logits.shape[0]

    def merge(self, other: "TopKCounter") -> None:
        """Add another counter's samples and hits to this one."""
        for k, hits in other.hits.items():
            self.hits[k] = self.hits.get(k, 0) + hits
        self.samples += other.samples

    def accuracy(self, k: int) -> float:
        """Fraction of images with a top-k hit (0 for an empty counter)."""
        return self.hits.get(k, 0) / self.samples if self.samples else 0.0


def corruption_errors(top1_errors: Mapping[str, Mapping[int, float]], alexnet_errors: Mapping[str, float]) -> dict[str, float]:
    """Corruption Error (CE, %) per corruption, normalised by AlexNet (Hendrycks & Dietterich 2019).

    CE_c = sum_s E_{s,c} / sum_s E^AlexNet_{s,c}. The AlexNet table holds its error averaged over
    the five severities, so this is the mean error over the severities given divided by that
    average; with all five severities present it is exactly the paper's CE.

    Args:
        top1_errors: corruption -> severity -> top-1 error (fraction).
        alexnet_errors: corruption -> AlexNet top-1 error averaged over severities (fraction).
    Returns:
        corruption -> CE in percent, for the corruptions the AlexNet table has.
    """
    return {
        corruption: 100.0 * fmean(by_severity.values()) / alexnet_errors[corruption]
        for corruption, by_severity in top1_errors.items()
        if corruption in alexnet_errors and by_severity
    }


def mean_corruption_error(errors_percent: Mapping[str, float]) -> float:
    """mCE (%): the mean CE over corruptions."""
    return fmean(errors_percent.values())
