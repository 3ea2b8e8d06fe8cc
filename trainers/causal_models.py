"""High-level causal models that interchange intervention training aligns a network with,
registered by name (``train.objective.causal_model``).

A causal model computes its output from its variables' values, one row per sample (the values
come with the batch, e.g. a pointer-value grid's four digits from the sample's metadata). An
interchange sets one variable of the base to the source's value and recomputes the output: the
counterfactual label. A typed interchange (the seed's Eqn. 7) reads the source at another variable of
the same type (the grid's four digits share one type) and writes it into the base's variable.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from trainers.causal_variables import CAUSAL_VARIABLES
from trainers.errors import TrainError


@dataclass(frozen=True)
class CausalModel:
    """Named variables and the output as a function of their values ((N, variables) -> (N,) int64);
    every variable takes the values ``0 .. values - 1``."""

    variables: tuple[str, ...]
    output: Callable[[torch.Tensor], torch.Tensor]
    values: int

    def counterfactual(self, base: torch.Tensor, source: torch.Tensor, variables: torch.Tensor,
                       source_variables: torch.Tensor | None = None) -> torch.Tensor:
        """The output when row r's variable ``variables[r]`` takes its source's value of ``source_variables[r]``
        (None: the same variable). No host sync."""
        read = variables if source_variables is None else source_variables
        written = source.gather(1, read[:, None])
        chosen = torch.nn.functional.one_hot(variables, len(self.variables)).bool()
        return self.output(torch.where(chosen, written, base))


def pointed_position(values: torch.Tensor) -> torch.Tensor:
    """MNIST-PVR: the cell the top-left digit points at: 0-3 top-right (1), 4-6 bottom-left (2), 7-9 bottom-right (3)."""
    return 1 + (values[:, 0] >= 4).long() + (values[:, 0] >= 7).long()


def pointer_value(values: torch.Tensor) -> torch.Tensor:
    """MNIST-PVR: the label is the digit of the cell the top-left digit points at."""
    return values.gather(1, pointed_position(values)[:, None]).squeeze(1)


def conjunction(values: torch.Tensor) -> torch.Tensor:
    """The seed's Fig. 1: V1 AND V2 on {0, 1}."""
    return (values[:, 0] * values[:, 1]).long()


CAUSAL_MODELS = {
    "pointer_value": CausalModel(CAUSAL_VARIABLES["pointer_value"], pointer_value, values=10),  # digits
    "conjunction": CausalModel(CAUSAL_VARIABLES["conjunction"], conjunction, values=2),
}


def causal_model(name: str) -> CausalModel:
    """The registered causal model ``name``; a TrainError naming the known ones otherwise."""
    if name not in CAUSAL_MODELS:
        raise TrainError(f"causal model {name!r} is not registered (known: {', '.join(CAUSAL_MODELS)})")
    return CAUSAL_MODELS[name]
