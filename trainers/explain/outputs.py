"""What a sweep records at each step: the model's probability or logit of a class, or the cosine
similarity of its penultimate features to those at the sweep's first step (seed 004's three outputs)."""

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from torch import nn

OutputKind = Literal["probability", "logit", "cosine"]
OUTPUT_KINDS: tuple[OutputKind, ...] = ("probability", "logit", "cosine")
# Prepares [0, 1] images the way the classifier was trained to see them (resize, crop, normalise).
Prepare = Callable[[torch.Tensor], torch.Tensor]


def _head_features(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, the features ``model.fc`` receives): torchvision's ResNets and the small CNN end in ``fc``."""
    seen: list[torch.Tensor] = []
    handle = model.fc.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    try:
        logits = model(images)
    finally:
        handle.remove()
    return logits, seen[0].flatten(1)


def sweep_outputs(model: nn.Module, prepare: Prepare, sweeps: torch.Tensor, classes: torch.Tensor, kind: OutputKind,
                  batch_size: int = 256, device: torch.device | str = "cpu",
                  on_progress: Callable[[int, int], None] = lambda done, total: None) -> np.ndarray:
    """The output ``kind`` at every step of every sweep.

    Args:
        model: a classifier in eval mode (ending in ``fc``).
        prepare: [0, 1] images -> the model's input.
        sweeps: (B, N, 3, S, S) images in [0, 1], N steps of each of B sweeps.
        classes: (B,) whose probability or logit is read (unused for cosine).
        kind: probability, logit or cosine.
        on_progress: ``on_progress(images done, images in all)``.

    Returns:
        (B, N) float64.
    """
    count, steps = sweeps.shape[:2]
    flat = sweeps.reshape(count * steps, *sweeps.shape[2:])
    flat_classes = classes.repeat_interleave(steps)
    values = []
    on_progress(0, len(flat))
    with torch.inference_mode():
        for start in range(0, len(flat), batch_size):
            batch = prepare(flat[start : start + batch_size].to(device))
            logits, features = _head_features(model, batch)
            chosen = flat_classes[start : start + batch_size].to(device)
            if kind == "logit":
                values.append(logits.gather(1, chosen[:, None])[:, 0].double().cpu())
            elif kind == "probability":
                values.append(logits.double().softmax(dim=1).gather(1, chosen[:, None])[:, 0].cpu())
            else:
                values.append(features.double().cpu())
            on_progress(min(start + batch_size, len(flat)), len(flat))
    result = torch.cat(values)
    if kind != "cosine":
        return result.view(count, steps).numpy()
    features = result.view(count, steps, -1)
    return torch.nn.functional.cosine_similarity(features, features[:, :1], dim=-1).numpy()
