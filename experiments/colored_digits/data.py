"""The experiment's images: a confounded training set and test set, a validation set and a causal test set.

In training and in the confounded test, class c's background is one of its colours (the colour's
index is the image's environment, which IRM uses). In the validation set and the causal test the
background is drawn independently of the class, from the training colours and that set's own
held-out colours (validation and test hold out different ones). Settings chosen by a score are
chosen on validation; the causal test is only reported. Each split is an ImageFolder of PNGs,
written once (to a temporary directory, then renamed) and reused after.
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
from experiments.colored_digits.palette import Palette, make_palette

NUM_CLASSES = 10
PALETTE_FILE = "palette.json"
BASE_SPLITS = ("train", "test_confounded", "validation", "test_causal")


def environment_splits(config: DigitsDataConfig) -> tuple[str, ...]:
    """The training set per colour environment, which IRM reads one stream each of (none with one colour per class)."""
    count = config.colours_per_class
    return tuple(f"train_env{environment}" for environment in range(count)) if count > 1 else ()


def split_names(config: DigitsDataConfig) -> tuple[str, ...]:
    """Every split the config writes."""
    return (*BASE_SPLITS, *environment_splits(config))


@dataclass(frozen=True)
class Split:
    """One split's digits (indices into scikit-learn's 1,797) with their backgrounds."""

    indices: np.ndarray
    backgrounds: np.ndarray  # (N, 3)
    environments: np.ndarray | None  # (N,) colour index within the class; None where the colour is not tied


def _tied(indices: np.ndarray, labels: np.ndarray, palette: Palette, rng: np.random.Generator) -> Split:
    environments = rng.integers(palette.colours_per_class, size=len(indices))
    return Split(indices, palette.class_colours[labels[indices], environments], environments)


def _untied(indices: np.ndarray, colours: np.ndarray, rng: np.random.Generator) -> Split:
    return Split(indices, colours[rng.integers(len(colours), size=len(indices))], None)


def make_splits(config: DigitsDataConfig, labels: np.ndarray) -> tuple[Palette, dict[str, Split]]:
    """The palette and every split of ``split_names(config)``, a function of ``config`` alone."""
    rng = np.random.default_rng(config.seed)
    palette = make_palette(NUM_CLASSES, config.seed, config.colours_per_class)
    order = rng.permutation(len(labels))
    sizes = [round(fraction * len(labels)) for fraction in (config.causal_test_fraction, config.confounded_test_fraction, config.validation_fraction)]
    causal_indices, confounded_indices, validation_indices, train_indices = np.split(order, np.cumsum(sizes))
    training = palette.training_colours
    splits = {
        "train": _tied(train_indices, labels, palette, rng),
        "test_confounded": _tied(confounded_indices, labels, palette, rng),
        "test_causal": _untied(causal_indices, np.concatenate([training, palette.test_colours]), rng),
        "validation": _untied(validation_indices, np.concatenate([training, palette.validation_colours]), rng),
    }
    train = splits["train"]
    for environment, name in enumerate(environment_splits(config)):
        chosen = train.environments == environment
        splits[name] = Split(train.indices[chosen], train.backgrounds[chosen], train.environments[chosen])
    return palette, splits


def write_imagefolder(destination: Path, images: torch.Tensor, labels: np.ndarray, indices: np.ndarray) -> None:
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
        write_imagefolder(temporary / name, images, labels.numpy()[split.indices], split.indices)
    (temporary / PALETTE_FILE).write_text(json.dumps(record | palette.to_json(), indent=1))
    shutil.rmtree(destination, ignore_errors=True)
    temporary.rename(destination)
    return palette


def load_palette(destination: Path) -> Palette:
    """The palette that ``write_experiment_data`` recorded."""
    return Palette.from_json(json.loads((Path(destination) / PALETTE_FILE).read_text()))
