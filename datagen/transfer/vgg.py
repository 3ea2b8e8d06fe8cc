"""VGG-19 feature taps for style transfer, loaded by torchvision weights name or from a local state_dict.

Only the layers up to the deepest tapped one are kept. Taps are conv outputs (before the ReLU), as
in the GenInt reference code; the ReLUs are made out-of-place so they never overwrite a tap.
"""

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torchvision.models import VGG19_Weights, vgg19

from datagen.errors import DatagenError
from datagen.generators.checks import check_state_dict_keys, load_state_dict_file
from datagen.transfer.config import VGG19_CONV_NAMES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_names() -> tuple[str, ...]:
    """Name of every module of ``vgg19().features`` in order: conv1_1, relu1_1, ..., pool1, conv2_1, ..."""
    with torch.device("meta"):  # names only: no weights allocated
        layers = vgg19().features
    names, block, index = [], 1, 1
    for layer in layers:
        if isinstance(layer, nn.MaxPool2d):
            names.append(f"pool{block}")
            block, index = block + 1, 1
        elif isinstance(layer, nn.ReLU):
            names.append(f"relu{block}_{index}")
            index += 1
        else:
            names.append(f"conv{block}_{index}")
    return tuple(names)


VGG19_LAYER_NAMES = _layer_names()
# The config names the convolutions without importing torchvision; they must be the network's.
assert VGG19_CONV_NAMES == tuple(name for name in VGG19_LAYER_NAMES if name.startswith("conv"))


class VggFeatures(nn.Module):
    """Frozen, truncated VGG-19 features that map images in [0, 1] to the tapped conv outputs.

    Attributes:
        weights_id: names the weights for provenance (torchvision name or the file's sha256 prefix).
    """

    def __init__(self, layers: nn.Sequential, taps: Sequence[str], weights_id: str):
        super().__init__()
        self.layers = nn.Sequential(*(nn.ReLU() if isinstance(layer, nn.ReLU) else layer for layer in layers))
        self.layers.requires_grad_(False).eval()
        self.taps = frozenset(taps)
        self.weights_id = weights_id
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Tapped activations of ``images`` (N, 3, H, W) in [0, 1], by layer name."""
        hidden = (images - self.mean) / self.std
        tapped = {}
        for name, layer in zip(VGG19_LAYER_NAMES, self.layers):
            hidden = layer(hidden)
            if name in self.taps:
                tapped[name] = hidden
        return tapped


def _features_state(state: dict, where: str) -> dict[str, torch.Tensor]:
    """The ``vgg19().features`` part of a checkpoint of either vgg19() or vgg19().features, keys checked."""
    with torch.device("meta"):
        whole = vgg19()
    if any(key.startswith("features.") for key in state):
        check_state_dict_keys(whole, state, where)
        return {key.removeprefix("features."): value for key, value in state.items() if key.startswith("features.")}
    check_state_dict_keys(whole.features, state, where)
    return state


def _local_state(weights: str) -> tuple[Path, dict]:
    """(path, state_dict) of a local checkpoint, memory-mapped: only the layers up to the deepest tap
    are used of a 550 MB file."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise DatagenError(
            f"VGG-19 weights {str(path)!r}: no such file; set datagen.transfer.gatys.vgg_weights to a checkpoint path or one of "
            f"{list(VGG19_Weights.__members__)}"
        )
    return path, load_state_dict_file(path, "VGG-19 weights", mmap=True)


def _load_state(weights: str) -> tuple[dict, str]:
    """(state_dict, weights id) for a torchvision weights name or a checkpoint path."""
    if weights in VGG19_Weights.__members__:
        enum = VGG19_Weights[weights]
        return enum.get_state_dict(progress=False), f"torchvision:VGG19_Weights.{enum.name}"
    path, state = _local_state(weights)
    with path.open("rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()
    return state, f"sha256:{digest[:16]}"


def check_vgg_weights(weights: str) -> None:
    """Raise DatagenError now if ``load_vgg_features`` could not use ``weights`` (before any actor starts):
    a local file is read and its keys and shapes checked; a torchvision name needs no check (and downloads nothing).
    """
    if weights not in VGG19_Weights.__members__:
        _features_state(_local_state(weights)[1], f"VGG-19 weights {weights}")


def load_vgg_features(weights: str, taps: Sequence[str], device: torch.device) -> VggFeatures:
    """Load VGG-19 features, truncated after the deepest of ``taps``, frozen, on ``device``.

    Args:
        weights: a torchvision ``VGG19_Weights`` name (downloads once into the torch hub cache) or a
            path to a state_dict of ``vgg19()`` or of ``vgg19().features``.
        taps: layer names whose outputs ``forward`` returns (e.g. "conv2_2").
        device: where the network runs.

    Returns:
        The feature extractor.

    Raises:
        DatagenError: unknown tap, missing or unreadable file, or keys or shapes that do not match VGG-19.
    """
    unknown = sorted(set(taps) - set(VGG19_CONV_NAMES))
    if unknown or not taps:
        raise DatagenError(f"VGG-19 taps {unknown or list(taps)} are not conv layers; use names like {VGG19_CONV_NAMES[:3]}")
    state, weights_id = _load_state(weights)
    features_state = _features_state(state, f"VGG-19 weights {weights}")
    with torch.device("meta"):
        layers = vgg19().features
    layers.load_state_dict(features_state, assign=True)  # keys and shapes checked; assign: no random init
    deepest = max(VGG19_LAYER_NAMES.index(name) for name in taps)
    return VggFeatures(layers[: deepest + 1], taps, weights_id).to(device)
