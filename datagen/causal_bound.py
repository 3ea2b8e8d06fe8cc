"""The causal-bound estimate of GenInt (seed 000, section 5.4 and appendix 9): log P(x | z).

For held-out real images x_i and images x'_j generated under strategy z,

    log P(x | z) = sum_i log P(x_i | z),   P(x_i | z) = sum_j P(x_i | x'_j)   (P(x'_j | z) = 1: the
                                                                             generator is deterministic)

and P(x_i | x'_j) comes from the cross-entropy of the two images' penultimate-layer features after
normalisation. The paper does not spell the normalisation out; the authors' estimator turns each
feature vector f into a distribution over its channels with a softmax and scores a pair by the
negative cross-entropy, so

    log P(x_i | x'_j) = sum_c softmax(f_i / T)_c * log softmax(f'_j / T)_c = -H(p_i, q_j)

with temperature T = 1 there (T is ours, to rescale features of another extractor). It never
exceeds -H(p_i), the value of an exact duplicate, since H(p, q) = H(p) + KL(p || q).

The sum over j is approximated by its largest term, the nearest generated image (``nearest``, the
paper's choice); ``sum`` computes it exactly (logsumexp), which grows with the number of generated
images, so strategies are compared at the same number of images per class either way. As in the
authors' code, a real image is compared with the images generated for its own class only, and the
reported value is the mean over real images (the paper's -5.162 is on that scale); the sum is kept too.

Pure tensor math: feature extraction and generation live with their callers.
"""

from dataclasses import dataclass
from typing import Literal

import torch

Estimate = Literal["nearest", "sum"]
# Pairs scored at once (float64: 256 MiB); more real images are scored in chunks of queries.
_MAX_PAIRS = 2**25


@dataclass(frozen=True)
class BoundEstimate:
    """log P(x | z) over ``queries`` real images: ``mean`` per image (the paper's scale) and ``total``."""

    mean: float
    total: float
    queries: int


def pair_log_likelihoods(query_features: torch.Tensor, generated_features: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log P(x_i | x'_j) = -H(softmax(f_i / T), softmax(f'_j / T)) for every pair.

    Args:
        query_features: (N, D) penultimate features of real images.
        generated_features: (M, D) penultimate features of generated images.
        temperature: T > 0, divides the features before the softmax.

    Returns:
        (N, M) float64 log-likelihoods, each <= -H(p_i).
    """
    query = torch.softmax(query_features.double() / temperature, dim=1)
    generated = torch.log_softmax(generated_features.double() / temperature, dim=1)
    return query @ generated.T


def query_log_likelihoods(
    query_features: torch.Tensor,
    generated_features: torch.Tensor,
    temperature: float = 1.0,
    estimate: Estimate = "nearest",
) -> torch.Tensor:
    """log P(x_i | z) of each real image: the best pair (``nearest``) or the log of the sum over pairs (``sum``).

    Returns:
        (N,) float64.
    """
    if generated_features.shape[0] == 0:
        raise ValueError("no generated features to compare the real images with")
    rows = max(1, _MAX_PAIRS // generated_features.shape[0])  # the (rows, M) pair matrix stays bounded
    scores = []
    for start in range(0, query_features.shape[0], rows):
        pairs = pair_log_likelihoods(query_features[start : start + rows], generated_features, temperature)
        scores.append(pairs.max(dim=1).values if estimate == "nearest" else torch.logsumexp(pairs, dim=1))
    return torch.cat(scores) if scores else torch.empty(0, dtype=torch.float64)


def causal_bound(
    query_features: torch.Tensor,
    query_labels: torch.Tensor,
    generated_features: torch.Tensor,
    generated_labels: torch.Tensor,
    temperature: float = 1.0,
    estimate: Estimate = "nearest",
    same_class: bool = True,
) -> BoundEstimate:
    """log P(x | z) of real images given images generated under one strategy.

    Args:
        query_features, query_labels: (N, D) and (N,) for the held-out real images.
        generated_features, generated_labels: (M, D) and (M,) for the generated images.
        temperature, estimate: see ``query_log_likelihoods``.
        same_class: compare each real image with the generated images of its class only (the
            authors' estimator); False compares it with all of them.

    Raises:
        ValueError: no real images, or a real image's class has no generated image.
    """
    if query_features.shape[0] == 0:
        raise ValueError("no real images to score")
    if not same_class:
        scores = query_log_likelihoods(query_features, generated_features, temperature, estimate)
    else:
        scores = torch.empty(query_features.shape[0], dtype=torch.float64)
        for label in query_labels.unique().tolist():
            queries, generated = query_labels == label, generated_labels == label
            if not generated.any():
                raise ValueError(f"class {label} has real images but no generated image")
            scores[queries] = query_log_likelihoods(query_features[queries], generated_features[generated], temperature, estimate)
    return BoundEstimate(mean=float(scores.mean()), total=float(scores.sum()), queries=int(scores.shape[0]))
