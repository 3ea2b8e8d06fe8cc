"""Seed 003's multi-task heads (its Eq. 8): one linear classifier per aligned site, predicting the value of
that site's high-level variable from the network's representation there, trained with the network.

The heads are a submodule of the classifier (``objective_heads``), added before ``deepspeed.initialize``
so the engine's optimiser, ZeRO partitions and checkpoints hold them like any other weight. The
classifier's forward never calls them; a checkpoint loaded as a classifier for evaluation leaves them
out (``without_site_heads``).
"""

import torch
from torch import nn

from trainers.alignment import Alignment, Index
from trainers.causal_models import causal_model
from trainers.config import ObjectiveConfig
from trainers.errors import TrainError
from trainers.interventions import aligned_module, recorded

HEADS_NAME = "objective_heads"


class SiteHeads(nn.Module):
    """One ``nn.Linear`` per site, from the site's flattened values to its variable's values."""

    def __init__(self, features: int, sites: int, values: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(features, values) for _ in range(sites))

    def forward(self, aligned: torch.Tensor, indices: list[Index]) -> list[torch.Tensor]:
        """Each site's logits over its variable's values, from the aligned module's output ``aligned``."""
        return [head(aligned[(slice(None), *index)].flatten(1)) for head, index in zip(self.heads, indices)]


def add_site_heads(model: nn.Module, objective: ObjectiveConfig, image_size: int) -> None:
    """Give ``model`` its multi-task heads when ``objective.multitask_weight`` > 0 (else leave it as it is).

    A site's size is read from one forward of a blank ``image_size`` square in eval mode (so BatchNorm's
    running statistics do not see it), on the CPU, before the model moves to its device.
    """
    if objective.multitask_weight == 0:
        return
    alignment = objective.alignment
    training = model.training
    model.eval()
    with torch.no_grad(), recorded(aligned_module(model, alignment)) as seen:
        model(torch.zeros(1, 3, image_size, image_size))
    model.train(training)
    indices = alignment.indices(seen[0].shape[1:])
    features = seen[0][(slice(None), *indices[0])].numel()
    model.add_module(HEADS_NAME, SiteHeads(features, len(indices), causal_model(objective.causal_model).values))


def site_heads(model: nn.Module, alignment: Alignment) -> SiteHeads:
    """The heads ``add_site_heads`` gave ``model``; a TrainError if it has none."""
    heads = getattr(model, HEADS_NAME, None)
    if not isinstance(heads, SiteHeads):
        raise TrainError(f"train.objective.multitask_weight > 0 needs the heads at {alignment.module}, "
                         "and the model has none (build it with trainers.engine.build_engine)")
    return heads


def without_site_heads(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint's model weights without the multi-task heads: the classifier alone."""
    return {key: value for key, value in state.items() if not key.startswith(HEADS_NAME + ".")}
