"""The experiment's images: a confounded training set, a confounded test set and a causal test set.

In training and in the confounded test, class c's background is one of its two colours (the
colour's index is the image's environment, which IRM uses). In the causal test the background is
drawn from every colour, held-out ones included, independently of the class. Each split is an
ImageFolder of PNGs, written once (to a temporary directory, then renamed) and reused after.
"""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cluster.errors import ClusterError
from experiments.colored_digits.config import DigitsDataConfig
from experiments.colored_digits.painter import digit_strokes, paint
from experiments.colored_digits.palette import COLOURS_PER_CLASS, Palette, make_palette

NUM_CLASSES = 10
PALETTE_FILE = "palette.json"
# Training images are also written per environment: IRM reads one stream per environment.
SPLITS = ("train", "test_confounded", "test_causal", *(f"train_env{environment}" for environment in range(COLOURS_PER_CLASS)))


@dataclass(frozen=True)
class Split:
    """One split's digits (indices into scikit-learn's 1,797) with their backgrounds."""

    indices: np.ndarray
    backgrounds: np.ndarray  # (N, 3)
    environments: np.ndarray | None  # (N,) colour index within the class; None for the causal test


def _tied(indices: np.ndarray, labels: np.ndarray, palette: Palette, rng: np.random.Generator) -> Split:
    environments = rng.integers(COLOURS_PER_CLASS, size=len(indices))
    return Split(indices, palette.class_colours[labels[indices], environments], environments)


def make_splits(config: DigitsDataConfig, labels: np.ndarray) -> tuple[Palette, dict[str, Split]]:
    """The palette and the three splits, a function of ``config.seed`` alone."""
    rng = np.random.default_rng(config.seed)
    palette = make_palette(NUM_CLASSES, config.seed)
    order = rng.permutation(len(labels))
    confounded = round(config.confounded_test_fraction * len(labels))
    causal = round(config.causal_test_fraction * len(labels))
    causal_indices, confounded_indices, train_indices = np.split(order, [causal, causal + confounded])
    every = palette.every_colour
    splits = {
        "train": _tied(train_indices, labels, palette, rng),
        "test_confounded": _tied(confounded_indices, labels, palette, rng),
        "test_causal": Split(causal_indices, every[rng.integers(len(every), size=len(causal_indices))], None),
    }
    train = splits["train"]
    for environment in range(COLOURS_PER_CLASS):
        chosen = train.environments == environment
        splits[f"train_env{environment}"] = Split(train.indices[chosen], train.backgrounds[chosen], train.environments[chosen])
    return palette, splits


def _write_imagefolder(destination: Path, images: torch.Tensor, labels: np.ndarray, indices: np.ndarray) -> None:
    pixels = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    for image, label, index in zip(pixels, labels, indices):
        folder = destination / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"digit{index:04d}.png")


def write_experiment_data(config: DigitsDataConfig, destination: Path) -> Palette:
    """Write every split as ``destination/<split>/<class>/digitNNNN.png`` plus ``palette.json``.

    A destination holding the same config's data is reused as it is; another config's is refused.
    """
    destination = Path(destination)
    record = {"config": config.model_dump(mode="json")}
    strokes, labels = digit_strokes(config.image_size)
    palette, splits = make_splits(config, labels.numpy())
    palette_file = destination / PALETTE_FILE
    if palette_file.exists():
        written = json.loads(palette_file.read_text())
        if written.get("config") != record["config"]:
            raise ClusterError(f"{destination} holds data made with other settings ({written.get('config')}); "
                               "run with --fresh or use another output_dir")
        return palette
    temporary = destination.with_name(destination.name + ".tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    for name, split in splits.items():
        images = paint(strokes[split.indices], torch.from_numpy(split.backgrounds))
        _write_imagefolder(temporary / name, images, labels.numpy()[split.indices], split.indices)
    (temporary / PALETTE_FILE).write_text(json.dumps(record | palette.to_json(), indent=1))
    shutil.rmtree(destination, ignore_errors=True)
    temporary.rename(destination)
    return palette


def load_palette(destination: Path) -> Palette:
    """The palette that ``write_experiment_data`` recorded."""
    record = json.loads((Path(destination) / PALETTE_FILE).read_text())
    return Palette(np.array(record["class_colours"], dtype=np.float32), np.array(record["held_out"], dtype=np.float32))
