"""The benchmarks' images: digit strokes filled with a foreground look over a background look.

A look is a (3, S, S) image: a flat colour or a texture patch. In training both looks are tied to
the class (coloured: the stroke colour over black, as C-MNIST; double_coloured: stroke and
background colour, as DC-MNIST; textured: stroke and background texture cut from scikit-learn's two
sample photographs, standing in for W-MNIST's wildlife textures). The validation set and the test
draw each look independently of the class and of each other, from the training looks and that
split's own held-out looks (validation and test hold out different ones), so a setting chosen on
validation has seen no test look. Each split is an ImageFolder of PNGs, written once and reused.
"""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_sample_images

from cluster.errors import ClusterError
from experiments.cgn_digits.config import CgnDigitsDataConfig, Variant
from experiments.colored_digits.data import write_imagefolder
from experiments.colored_digits.painter import digit_strokes
from experiments.colored_digits.palette import all_colours

NUM_CLASSES = 10
SPLITS = ("train", "validation", "test")
RECORD_FILE = "looks.json"
HELD_OUT_PER_SPLIT = 2  # looks per role only the validation set, or only the test, wears
# Texture patches: cut at twice the image side and downsampled, so a patch shows structure, not one blur.
PATCH_SCALE = 2


@dataclass(frozen=True)
class LookPool:
    """One role's looks (stroke or background): (K, 3, S, S), the first NUM_CLASSES tied to the classes in training."""

    looks: torch.Tensor

    @property
    def training(self) -> np.ndarray:
        return np.arange(NUM_CLASSES)

    def held_out(self, split: str) -> np.ndarray:
        """Indices of the looks only ``split`` (validation or test) wears; none where the role is not confounded."""
        if len(self.looks) == 1:
            return np.zeros(0, dtype=np.int64)
        first = NUM_CLASSES + (0 if split == "validation" else HELD_OUT_PER_SPLIT)
        return np.arange(first, first + HELD_OUT_PER_SPLIT)


def _flat(colours: np.ndarray, size: int) -> torch.Tensor:
    return torch.from_numpy(colours).float().view(-1, 3, 1, 1).expand(-1, 3, size, size).clone()


def _patches(photo: np.ndarray, count: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """``count`` square patches of a photograph at seeded positions, (count, 3, size, size) in [0, 1]."""
    side = size * PATCH_SCALE
    rows = rng.integers(photo.shape[0] - side, size=count)
    columns = rng.integers(photo.shape[1] - side, size=count)
    crops = np.stack([photo[row : row + side, column : column + side] for row, column in zip(rows, columns)])
    crops = torch.from_numpy(crops).float().permute(0, 3, 1, 2) / 255
    return F.interpolate(crops, size=(size, size), mode="area")


def make_pools(variant: Variant, size: int, seed: int) -> tuple[LookPool, LookPool]:
    """The stroke and background looks of a variant: 10 tied ones, then validation's, then the test's held-out ones."""
    rng = np.random.default_rng(seed)
    count = NUM_CLASSES + 2 * HELD_OUT_PER_SPLIT
    black = LookPool(torch.zeros(1, 3, size, size))
    if variant == "textured":
        flower, china = load_sample_images().images[1], load_sample_images().images[0]
        # Bright strokes over darkened backgrounds, so the digit stays visible over any pair.
        return LookPool(0.4 + 0.6 * _patches(flower, count, size, rng)), LookPool(0.5 * _patches(china, count, size, rng))
    colours = rng.permutation(all_colours())
    bright = colours[colours.max(axis=1) == 1.0]  # a full channel: visible over black
    if variant == "coloured":
        return LookPool(_flat(bright[:count], size)), black
    strokes = bright[:count]
    others = np.array([colour for colour in colours if not any(np.array_equal(colour, stroke) for stroke in strokes)])
    backgrounds = np.concatenate([others, strokes[::-1]])[:count]  # too few colours left: reuse strokes, reversed
    return LookPool(_flat(strokes, size)), LookPool(_flat(backgrounds, size))


@dataclass(frozen=True)
class Split:
    indices: np.ndarray  # into scikit-learn's 1,797 digits
    strokes: np.ndarray  # look index per image
    backgrounds: np.ndarray


def _untied_looks(pool: LookPool, split: str, count: int, rng: np.random.Generator) -> np.ndarray:
    choices = np.concatenate([pool.training, pool.held_out(split)]) if len(pool.looks) > 1 else np.zeros(1, dtype=np.int64)
    return choices[rng.integers(len(choices), size=count)]


def make_splits(config: CgnDigitsDataConfig, variant: Variant, labels: np.ndarray) -> tuple[tuple[LookPool, LookPool], dict[str, Split]]:
    """The looks and every split, a function of the config alone."""
    pools = make_pools(variant, config.image_size, config.seed)
    rng = np.random.default_rng(config.seed + 1)
    order = rng.permutation(len(labels))
    sizes = [round(fraction * len(labels)) for fraction in (config.test_fraction, config.validation_fraction)]
    test, validation, train = np.split(order, np.cumsum(sizes))
    stroke_pool, background_pool = pools

    def tied(pool: LookPool, indices: np.ndarray) -> np.ndarray:
        return labels[indices] if len(pool.looks) > 1 else np.zeros(len(indices), dtype=np.int64)

    splits = {"train": Split(train, tied(stroke_pool, train), tied(background_pool, train))}
    for name, indices in (("validation", validation), ("test", test)):
        strokes = _untied_looks(stroke_pool, name, len(indices), rng)
        backgrounds = _untied_looks(background_pool, name, len(indices), rng)
        if variant == "double_coloured":  # a stroke never wears its background's colour (the digit would vanish)
            clash = torch.stack([(stroke_pool.looks[s] == background_pool.looks[b]).all() for s, b in zip(strokes, backgrounds)]).numpy()
            backgrounds[clash] = _untied_looks(background_pool, name, int(clash.sum()), rng)
        splits[name] = Split(indices, strokes, backgrounds)
    return pools, splits


def framed_strokes(config: CgnDigitsDataConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits' strokes inside an empty ``margin_px`` frame, (N, 1, S, S) in [0, 1], and their labels."""
    strokes, labels = digit_strokes(config.image_size - 2 * config.margin_px)
    margin = config.margin_px
    return F.pad(strokes, (margin, margin, margin, margin)), labels


def paint_looks(strokes: torch.Tensor, foregrounds: torch.Tensor, backgrounds: torch.Tensor) -> torch.Tensor:
    """Strokes (N, 1, S, S) filled with their foreground look over their background look, (N, 3, S, S)."""
    return strokes * foregrounds + (1 - strokes) * backgrounds


def write_benchmark_data(config: CgnDigitsDataConfig, variant: Variant, destination: Path) -> None:
    """Write every split as ``destination/<split>/<class>/digitNNNN.png``; a destination holding the same config's data is reused."""
    destination = Path(destination)
    record = {"config": config.model_dump(mode="json"), "variant": variant}
    record_file = destination / RECORD_FILE
    if record_file.exists():
        if json.loads(record_file.read_text()) != record:
            raise ClusterError(f"{destination} holds data made with other settings; run with --fresh or use another output_dir")
        return
    strokes, labels = framed_strokes(config)
    (stroke_pool, background_pool), splits = make_splits(config, variant, labels.numpy())
    temporary = destination.with_name(destination.name + ".tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    for name, split in splits.items():
        images = paint_looks(strokes[split.indices], stroke_pool.looks[split.strokes], background_pool.looks[split.backgrounds])
        write_imagefolder(temporary / name, images, labels.numpy()[split.indices], split.indices)
    (temporary / RECORD_FILE).write_text(json.dumps(record, indent=1))
    shutil.rmtree(destination, ignore_errors=True)
    temporary.rename(destination)
