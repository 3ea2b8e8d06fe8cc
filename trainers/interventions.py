"""Interchange interventions by forward hooks: name a module's output and slices of it (sites),
run a forward pass with a base input's sites replaced by a source input's values. No model
surgery: the same hooks work on torchvision's ResNets, the small CNN and any ``nn.Module``.

A site is an index into one row of the module's output (the batch dimension excluded). Every
row of a batch may swap its own site (``base_sites``) from its own source site (``source_sites``:
the same site, or another site of the same type: the seed's typed IIT, Eqn. 7, swaps between the
grid's four quadrants too, its "no typing" ablation only within a position); the
choice is made with tensor indexing and ``torch.where`` so nothing waits for the device.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from trainers.alignment import Alignment, Index
from trainers.errors import TrainError

def aligned_module(model: nn.Module, alignment: Alignment) -> nn.Module:
    """The module the alignment names; a TrainError naming it and the model's top-level modules if none."""
    try:
        return model.get_submodule(alignment.module)
    except AttributeError:
        known = ", ".join(name for name, _ in model.named_children())
        raise TrainError(f"alignment module {alignment.module!r} is not in the model (its top-level modules: {known})") from None


@contextmanager
def _hooked(module: nn.Module, hook) -> Iterator[None]:
    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def recorded(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collects ``module``'s outputs of the forward passes run inside the block."""
    seen = []
    # A clone: an in-place module after the aligned one (torchvision's ReLU(inplace=True) after bn1)
    # would otherwise overwrite the recorded values.
    with _hooked(module, lambda module, args, output: seen.append(output.clone())):
        yield seen


@contextmanager
def intervening(module: nn.Module, alignment: Alignment, source_values: torch.Tensor, base_sites: torch.Tensor,
                source_sites: torch.Tensor) -> Iterator[None]:
    """Inside the block every forward pass has ``module``'s output swapped at the aligned sites (``swap_sites``)."""

    def replace(module, args, output):
        return swap_sites(output, source_values, alignment.indices(output.shape[1:]), base_sites, source_sites)

    with _hooked(module, replace):
        yield


def capture(model: nn.Module, alignment: Alignment, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's output on ``inputs`` and the aligned module's output on them."""
    with recorded(aligned_module(model, alignment)) as seen:
        logits = model(inputs)
    return logits, seen[0]


def swap_sites(base: torch.Tensor, source: torch.Tensor, indices: Sequence[Index], base_sites: torch.Tensor,
               source_sites: torch.Tensor) -> torch.Tensor:
    """``base`` with row r's site ``base_sites[r]`` replaced by ``source`` row r's site ``source_sites[r]``.

    All sites must have one shape (the quadrants do; the toy's units do). Differentiable in both.
    """
    rows = torch.arange(len(base), device=base.device)
    regions = torch.stack([source[(slice(None), *index)] for index in indices])  # (sites, N, ...)
    chosen = regions[source_sites, rows]  # row r's source region
    swapped = base.clone()
    for site, index in enumerate(indices):
        region = (slice(None), *index)
        here = (base_sites == site).view(-1, *[1] * (chosen.dim() - 1))
        swapped[region] = torch.where(here, chosen, base[region])
    return swapped


def interchange_forward(model: nn.Module, alignment: Alignment, base: torch.Tensor, source: torch.Tensor,
                        base_sites: torch.Tensor, source_sites: torch.Tensor | None = None,
                        source_values: torch.Tensor | None = None) -> torch.Tensor:
    """The model's output on ``base`` with each row's aligned site set to its source's values.

    Args:
        base, source: paired inputs (row r of ``base`` takes from row r of ``source``).
        base_sites: (N,) int64, the site each base row is intervened at.
        source_sites: (N,) int64, the site read from the source; None: the same as ``base_sites``.
        source_values: the aligned module's output on ``source`` if already computed (gradients
            flow into it as into the base run, as in the seed's training).
    """
    module = aligned_module(model, alignment)
    if source_values is None:
        _, source_values = capture(model, alignment, source)
    with intervening(module, alignment, source_values, base_sites, base_sites if source_sites is None else source_sites):
        return model(base)
