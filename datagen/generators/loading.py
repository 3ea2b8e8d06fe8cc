"""Build the configured generator on a device."""

import torch

from datagen.generators.base import Generator
from datagen.generators.biggan import load_biggan
from datagen.generators.cgn import load_cgn
from datagen.generators.cvae import load_cvae


def pick_device(device: str) -> torch.device:
    """``auto`` means CUDA when this process sees a GPU, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_generator(kind: str, weights: str, device: torch.device, precision: str = "fp32") -> Generator:
    """Load a BigGAN (by model name or directory), a CVAE or a CGN (directory); every weight key is checked.

    Raises:
        DatagenError: missing or mismatched weights.
    """
    if kind == "biggan":
        return load_biggan(weights, device, precision)
    if kind == "cgn":
        return load_cgn(weights, device)
    return load_cvae(weights, device)
