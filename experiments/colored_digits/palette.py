"""Background colours of the Colored Digits experiment and how they are tied to the classes.

The confounder is the background colour. Channel levels {0, 0.5, 1} give 27 colours; the four
brightest (white and its neighbours) are left out so the white strokes stay visible. A seeded
shuffle gives each class its training colours (two in the paper's text, one as the authors' code
runs) and holds the rest out of training entirely; the held-out colours are split between the
validation set and the causal test, so nothing chosen on validation has seen a test colour.
"""

import itertools
from dataclasses import dataclass

import numpy as np

CHANNEL_LEVELS = (0.0, 0.5, 1.0)
MAX_BRIGHTNESS = 2.0  # sum of the channels; brighter backgrounds hide white strokes
# The largest channel difference between two palette colours is 0.5; a reading further than this
# from every training colour is a new background (PNG rounding moves a colour by under 0.01).
NEW_COLOUR_TOLERANCE = 0.15


def all_colours() -> np.ndarray:
    """Every background colour the experiment may use, (K, 3) in [0, 1], in a fixed order."""
    colours = [colour for colour in itertools.product(CHANNEL_LEVELS, repeat=3) if sum(colour) <= MAX_BRIGHTNESS]
    return np.array(colours, dtype=np.float32)


@dataclass(frozen=True)
class Palette:
    """Which colours each class wears in training, and which only validation or the causal test wear."""

    class_colours: np.ndarray  # (classes, colours per class, 3): environment e of class c wears class_colours[c, e]
    validation_colours: np.ndarray  # (V, 3): held out of training, worn only in the validation set
    test_colours: np.ndarray  # (T, 3): held out of training, worn only in the causal test

    @property
    def colours_per_class(self) -> int:
        return self.class_colours.shape[1]

    @property
    def training_colours(self) -> np.ndarray:
        return self.class_colours.reshape(-1, 3)

    @property
    def held_out(self) -> np.ndarray:
        """Every colour no training image has (validation's and the test's)."""
        return np.concatenate([self.validation_colours, self.test_colours])

    def to_json(self) -> dict:
        return {"class_colours": self.class_colours.tolist(), "validation_colours": self.validation_colours.tolist(),
                "test_colours": self.test_colours.tolist()}

    @classmethod
    def from_json(cls, record: dict) -> "Palette":
        def colours(key: str) -> np.ndarray:
            return np.array(record[key], dtype=np.float32)
        return cls(colours("class_colours"), colours("validation_colours").reshape(-1, 3), colours("test_colours").reshape(-1, 3))


def make_palette(num_classes: int, seed: int, colours_per_class: int = 2) -> Palette:
    """Shuffle ``all_colours`` with ``seed``; each class takes ``colours_per_class`` in turn, the rest
    are held out, the first half of them (rounded down) for validation and the others for the test.

    Raises:
        ValueError: when the palette leaves fewer than two colours to hold out (one per held-out set).
    """
    colours = np.random.default_rng(seed).permutation(all_colours())
    tied = num_classes * colours_per_class
    if tied + 2 > len(colours):
        raise ValueError(f"{num_classes} classes x {colours_per_class} colours need {tied} tied colours plus two held-out ones; "
                         f"the palette has {len(colours)}")
    held_out = colours[tied:]
    validation = len(held_out) // 2
    return Palette(colours[:tied].reshape(num_classes, colours_per_class, 3), held_out[:validation], held_out[validation:])


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


@dataclass(frozen=True)
class BackgroundColour:
    """The Colored Digits nuisance (``experiments.harness.fidelity.Nuisance``): the background colour."""

    palette: Palette
    name: str = "background colour"
    tolerance: float = NEW_COLOUR_TOLERANCE

    def read(self, images: np.ndarray) -> np.ndarray:
        return background_colours(images)

    def training_values(self) -> list[np.ndarray]:
        return list(self.palette.class_colours)
