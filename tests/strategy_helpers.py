"""What the strategy-search tests share: a tiny random CVAE with directions, a random small
classifier as the feature extractor, a held-out stream planted with the images one strategy
generates, and the job config tying them together."""

from pathlib import Path

import torch
import yaml

from datagen.directions import DirectionsConfig, compute_directions
from datagen.generators.cvae import ConditionalVae, CvaeGenerator
from datagen.generators.cvae_config import CvaeArchitecture
from datagen.generators.loading import load_generator
from datagen.produce import ImageEncoding, UnitProducer
from datagen.strategy_config import StrategyConfig
from datagen.directions import load_directions
from datagen.units import WorkUnit
from shards.writer import ShardWriter
from tests.store_helpers import save_small_classifier

CLASSES = 3
CVAE_SIZE = 8
# The base strategy every grid point edits: one image per seed, along one of the top 2 directions.
BASE_STRATEGY = {"kind": "intervention", "truncation": 1.0, "top_k": 2, "components_per_seed": 1,
                 "offsets_per_component": 1, "ranges": "spread", "spread_factor": 3.0, "seeds_per_class": 50}


def save_tiny_cvae(root: Path) -> tuple[Path, Path]:
    """A random CVAE (3 classes, 8 px, latent 3) at root/cvae and its directions at root/directions.npz."""
    torch.manual_seed(0)
    weights, directions = root / "cvae", root / "directions.npz"
    CvaeGenerator(ConditionalVae(CvaeArchitecture(num_classes=CLASSES, image_size=CVAE_SIZE, hidden_dim=16, latent_dim=3))).save(weights)
    config = DirectionsConfig(samples=64, components=3, batch_size=32, regression_samples=64)
    compute_directions(load_generator("cvae", str(weights), torch.device("cpu")), config, root / "state.npz").save(directions)
    return weights, directions


def plant_stream(root: Path, kind: str, weights: Path, directions: Path, strategy: dict, per_class: int, job_seed: int = 0) -> Path:
    """root/store/validation: the first ``per_class`` images per class that ``strategy`` generates
    (as PNG, lossless), i.e. exactly what a search scoring that strategy generates."""
    generator = load_generator(kind, str(weights), torch.device("cpu"))
    config = StrategyConfig.model_validate(strategy)
    producer = UnitProducer(generator, config, load_directions(directions, generator.latent_dim), job_seed, "validation",
                            batch_size=8, encoding=ImageEncoding("png"))
    stream_dir = root / "store" / "validation"
    with ShardWriter(stream_dir, "validation", "w0", "hash", max_samples=16) as writer:
        for class_index in range(CLASSES):
            unit = WorkUnit(class_index, 0, per_class // config.images_per_seed)
            for sample in producer.samples(unit):
                writer.write(sample)
    return stream_dir


def job_dict(kind: str, weights: Path, directions: Path, image_size: int, **search) -> dict:
    """A job over the store at store/ with the generator, a small_cnn extractor at clf.pt and ``search`` settings."""
    settings = {"real_stream": "validation", "samples_per_class": 6, "batch_size": 8, "device": "cpu",
                "feature_extractor": {"arch": "small_cnn", "weights": "clf.pt"}, **search}
    return {
        "name": "search", "output_dir": "out", "shards": {"root": "store"},
        "datagen": {"device": "cpu", "generator": {"kind": kind, "weights": str(weights)}, "directions": {"path": str(directions)},
                    "strategy": dict(BASE_STRATEGY)},
        "train": {"model": "small_cnn", "num_classes": CLASSES, "streams": {"original": {"batch_size": 2}},
                  "data": {"crop_size": image_size, "resize_size": image_size}},
        "strategy_search": settings,
    }


def write_job(root: Path, job: dict) -> Path:
    """job.yaml and the feature extractor (a random small_cnn state_dict, clf.pt) in ``root``."""
    save_small_classifier(root / "clf.pt", CLASSES)
    (root / "job.yaml").write_text(yaml.safe_dump(job, sort_keys=False))
    return root / "job.yaml"
