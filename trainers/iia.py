"""Interchange intervention accuracy (IIA, the seed's Eqn. 3): how often the intervened network's
prediction equals the intervened causal model's output, over (base, source, variable) triples."""

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from shards.causal_values import causal_values
from shards.errors import ShardError
from shards.images import read_stream_samples
from trainers.causal_models import CausalModel, causal_model
from trainers.data.config import LoaderConfig
from trainers.errors import TrainError
from trainers.interventions import Alignment, interchange_forward


def all_triples(count: int, variables: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every ordered (base, source) pair with every variable: base, source and variable indices."""
    base, source, variable = torch.meshgrid(torch.arange(count), torch.arange(count), torch.arange(variables), indexing="ij")
    return base.flatten(), source.flatten(), variable.flatten()


def sampled_triples(count: int, variables: int, samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``samples`` triples drawn uniformly with replacement (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.randint(count, (samples,), generator=generator), torch.randint(count, (samples,), generator=generator),
            torch.randint(variables, (samples,), generator=generator))


@torch.no_grad()
def interchange_intervention_accuracy(model: nn.Module, alignment: Alignment, causal: CausalModel, inputs: torch.Tensor,
                                      values: torch.Tensor, triples: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                                      batch_size: int = 512) -> float:
    """IIA in [0, 1] of ``model`` (predictions: argmax of its logits) on ``inputs`` with causal variables ``values``.

    Variable k is aligned with site k of ``alignment`` (typed interventions).
    """
    if alignment.site_count != len(causal.variables):
        raise TrainError(f"alignment at {alignment.module} has {alignment.site_count} sites but the causal model has "
                         f"{len(causal.variables)} variables ({', '.join(causal.variables)}); typed IIA aligns one site per variable")
    base, source, variable = triples
    agree = 0
    for start in range(0, len(base), batch_size):
        b, s, v = base[start : start + batch_size], source[start : start + batch_size], variable[start : start + batch_size]
        logits = interchange_forward(model, alignment, inputs[b], inputs[s], v.to(inputs.device))
        expected = causal.counterfactual(values[b], values[s], v).to(logits.device)
        agree += int((logits.argmax(1) == expected).sum())  # one sync per evaluation batch
    return agree / len(base)


@dataclass(frozen=True)
class StreamWithValues:
    """A whole stream in memory as the trainer sees it: normalised images (N, 3, S, S), labels (N,), causal variables (N, V)."""

    images: torch.Tensor
    labels: torch.Tensor
    values: torch.Tensor


def read_stream_with_values(stream_dir: Path, causal: CausalModel, loader: LoaderConfig) -> StreamWithValues:
    """Every committed sample of a shard stream with its causal variables (``shards.causal_values``), resized to
    ``loader.crop_size`` and normalised like ``augment: none`` training batches.

    Raises:
        TrainError: one line, when the stream cannot be read or a sample lacks the causal model's variables.
    """
    try:
        samples = read_stream_samples(Path(stream_dir), loader.crop_size)
        values = [causal_values(record, causal.variables, key) for record, key in zip(samples.provenance, samples.keys)]
    except ShardError as error:
        raise TrainError(f"{stream_dir}: {error}") from None
    if not values:
        raise TrainError(f"{stream_dir}: the manifest lists no committed samples")
    mean, std = torch.tensor(loader.mean).view(1, 3, 1, 1), torch.tensor(loader.std).view(1, 3, 1, 1)
    images = (torch.from_numpy(samples.images).float() / 255 - mean) / std
    return StreamWithValues(images, torch.from_numpy(samples.labels), torch.tensor(values, dtype=torch.int64))


@torch.no_grad()
def behavioural_accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` on ``inputs``."""
    hits = sum(int((model(inputs[start : start + batch_size]).argmax(1) == labels[start : start + batch_size]).sum())
               for start in range(0, len(labels), batch_size))  # one sync per batch
    return hits / len(labels)


@dataclass(frozen=True)
class IiaEvaluation:
    """``genint eval --suite iia``: behavioural accuracy and IIA of a classifier on one stream, both in [0, 1]."""

    data_dir: str
    samples: int
    causal_model: str
    alignment_module: str
    triples: int
    behavioural_top1: float
    iia: float


def evaluate_iia(model: nn.Module, stream_dir: Path, causal_name: str, alignment: Alignment, loader: LoaderConfig,
                 triples: int, seed: int = 0, device: torch.device | str = "cpu") -> IiaEvaluation:
    """Behavioural accuracy over every sample of the stream and IIA over ``triples`` sampled (base, source, variable)
    triples of it (seeded), the variable's aligned site swapped as in the seed's Eqn. 3. ``model`` is on ``device``.

    Raises:
        TrainError: one line for an unregistered causal model, an alignment the model lacks, or a stream without
            the causal variables.
    """
    causal = causal_model(causal_name)
    data = read_stream_with_values(stream_dir, causal, loader)
    images, labels = data.images.to(device), data.labels.to(device)
    model = model.eval()
    sampled = sampled_triples(len(labels), len(causal.variables), triples, seed)
    return IiaEvaluation(str(stream_dir), len(labels), causal_name, alignment.module, triples, behavioural_accuracy(model, images, labels),
                         interchange_intervention_accuracy(model, alignment, causal, images, data.values, sampled))
