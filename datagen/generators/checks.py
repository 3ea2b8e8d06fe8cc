"""Strict weight loading: a checkpoint must match the model key for key and shape for shape."""

import torch

from datagen.errors import DatagenError

_SHOWN = 3  # names listed per problem; a mismatched BigGAN can differ in hundreds of keys


def _shape(value: object) -> tuple[int, ...] | str:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def _listed(names: list[str]) -> str:
    more = f", ... (+{len(names) - _SHOWN})" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def check_state_dict_keys(model: torch.nn.Module, state: dict, where: str) -> None:
    """Raise one DatagenError naming missing, unexpected and wrongly shaped keys, if any."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = [
        f"{name} {_shape(state[name])} != {_shape(expected[name])}"
        for name in sorted(set(expected) & set(state))
        if _shape(state[name]) != _shape(expected[name])
    ]
    problems = [
        f"{label}: {_listed(names)}"
        for label, names in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", reshaped))
        if names
    ]
    if problems:
        raise DatagenError(f"{where}: weights do not match the model config ({'; '.join(problems)})")


def first_line(error: BaseException) -> str:
    """An exception's first line (or its type when it has no message), for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
