"""`genint generator train`: fit the configured generator kind on a shard stream."""

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from datagen.config import GeneratorConfig
from datagen.errors import DatagenError
from datagen.generators.base import Generator
from datagen.generators.cgn_training import train_cgn
from datagen.generators.cvae_training import load_stream_images, train_cvae

# Generator kinds genint trains itself (a BigGAN's weights come ready-made).
TRAINABLE_KINDS = ("cvae", "cgn")
KIND_NAMES = {"cvae": "CVAE", "cgn": "CGN"}


def training_epochs(config: GeneratorConfig) -> int:
    """Epochs the configured generator trains for (a progress bar's total)."""
    return config.cgn_train.epochs if config.kind == "cgn" else config.train.epochs


def training_fingerprint(config: GeneratorConfig, stream_shards: list[tuple[str, str]]) -> str:
    """sha256 of what a generator genint trains is made from: its kind, its training settings (less
    the thread count, which does not change the weights) and the committed shards it trains on.

    Args:
        config: the job's ``datagen.generator``.
        stream_shards: (name, sha256) of each committed shard of the training stream, in commit order.
    """
    settings = config.cgn_train if config.kind == "cgn" else config.train
    payload = {"kind": config.kind, "settings": settings.model_dump(mode="json", exclude={"threads"}),
               "train_stream": config.train_stream, "shards": stream_shards}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def train_from_stream(config: GeneratorConfig, stream_dir: Path, on_progress: Callable[[int, float], None] | None = None) -> Generator:
    """Train the generator ``config.kind`` names on every committed sample of ``stream_dir``.

    Args:
        config: the job's ``datagen.generator`` (``train`` for a CVAE, ``cgn_train`` for a CGN).
        stream_dir: the training stream's directory (``datagen.generator.train_stream`` of the store).
        on_progress: called as ``on_progress(epoch, mean loss)`` after every epoch.

    Raises:
        DatagenError: a kind genint does not train, an unreadable or empty stream, data that does not fit.
    """
    if config.kind not in TRAINABLE_KINDS:
        raise DatagenError(f"datagen.generator.kind {config.kind} is not trained by genint "
                           f"(trainable: {', '.join(TRAINABLE_KINDS)}); set datagen.generator.weights")
    if config.kind == "cgn":
        images, labels = load_stream_images(stream_dir, config.cgn_train.model.image_size)
        return train_cgn(images, labels, config.cgn_train, on_progress)[0]
    images, labels = load_stream_images(stream_dir, config.train.model.image_size)
    return train_cvae(images, labels, config.train, on_progress)[0]
