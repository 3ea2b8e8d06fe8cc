"""Interchange intervention accuracy (IIA, the seed's Eqn. 3): how often the intervened network's
prediction equals the intervened causal model's output, over (base, source, variable) triples."""

import torch
from torch import nn

from trainers.causal_models import CausalModel
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
