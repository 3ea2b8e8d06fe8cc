"""Strict weight loading: a checkpoint must match the model key for key."""

import torch

from datagen.errors import DatagenError


def check_state_dict_keys(model: torch.nn.Module, state: dict, where: str) -> None:
    """Raise one line naming missing and unexpected keys unless ``state`` matches ``model`` exactly."""
    expected, found = set(model.state_dict()), set(state)
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing or unexpected:
        shown = "; ".join(
            f"{label} {len(keys)} key(s): {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected)) if keys
        )
        raise DatagenError(f"{where}: checkpoint does not match the model ({shown})")
