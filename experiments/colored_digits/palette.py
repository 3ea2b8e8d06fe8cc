"""Background colours of the Colored Digits experiment and how they are tied to the classes.

The confounder is the background colour. Channel levels {0, 0.5, 1} give 27 colours; the four
brightest (white and its neighbours) are left out so the white strokes stay visible. A seeded
shuffle gives each class two training colours and holds the rest out of training entirely.
"""

import itertools
from dataclasses import dataclass

import numpy as np

CHANNEL_LEVELS = (0.0, 0.5, 1.0)
MAX_BRIGHTNESS = 2.0  # sum of the channels; brighter backgrounds hide white strokes
COLOURS_PER_CLASS = 2


def all_colours() -> np.ndarray:
    """Every background colour the experiment may use, (K, 3) in [0, 1], in a fixed order."""
    colours = [colour for colour in itertools.product(CHANNEL_LEVELS, repeat=3) if sum(colour) <= MAX_BRIGHTNESS]
    return np.array(colours, dtype=np.float32)


@dataclass(frozen=True)
class Palette:
    """Which colours each class wears in training, and which no training image wears."""

    class_colours: np.ndarray  # (classes, COLOURS_PER_CLASS, 3): environment e of class c wears class_colours[c, e]
    held_out: np.ndarray  # (H, 3): colours no training image has

    @property
    def training_colours(self) -> np.ndarray:
        return self.class_colours.reshape(-1, 3)

    @property
    def every_colour(self) -> np.ndarray:
        return np.concatenate([self.training_colours, self.held_out])

    def to_json(self) -> dict:
        return {"class_colours": self.class_colours.tolist(), "held_out": self.held_out.tolist()}


def make_palette(num_classes: int, seed: int) -> Palette:
    """Shuffle ``all_colours`` with ``seed``; classes take them two by two, the rest are held out."""
    colours = np.random.default_rng(seed).permutation(all_colours())
    tied = num_classes * COLOURS_PER_CLASS
    if tied >= len(colours):
        raise ValueError(f"{num_classes} classes need {tied} tied colours plus held-out ones; the palette has {len(colours)}")
    return Palette(colours[:tied].reshape(num_classes, COLOURS_PER_CLASS, 3), colours[tied:])


def background_colours(images: np.ndarray, patch_px: int = 3) -> np.ndarray:
    """Each image's background colour, read from its four corner patches (the digits are centred).

    Args:
        images: (N, 3, S, S) in [0, 1].
    Returns:
        (N, 3): the per-channel median over the corner patches' pixels.
    """
    p = patch_px
    corners = [images[:, :, :p, :p], images[:, :, :p, -p:], images[:, :, -p:, :p], images[:, :, -p:, -p:]]
    pixels = np.concatenate([corner.reshape(len(images), 3, -1) for corner in corners], axis=2)
    return np.median(pixels, axis=2)


def distance_to_palette(backgrounds: np.ndarray, palette_colours: np.ndarray) -> np.ndarray:
    """Each background's largest channel difference from its nearest palette colour, (N,)."""
    differences = np.abs(backgrounds[:, None, :] - palette_colours[None, :, :]).max(axis=2)
    return differences.min(axis=1)
