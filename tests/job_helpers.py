"""Tiny `genint run` jobs for the controller tests: 16 px digits as the original stream, a random
tiny BigGAN generating the interventional stream, ResNet-18 training on both."""

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from cluster.config import JobConfig
from cluster.examples import write_digits_imagefolder
from shards.locations import S3Url
from shards.manifest import Manifest
from shards.mirror import mirrored_store
from shards.reader import committed_shards, iter_samples
from shards.verify import verify_store
from tests.datagen_helpers import save_tiny_biggan

CLASSES = 10
IMAGES_PER_SEED = 2  # components_per_seed below


def job_assets(root: Path) -> tuple[Path, Path, Path]:
    """The digits ImageFolder and the tiny BigGAN's weights and directions under ``root`` (made once)."""
    digits = root / "digits"
    if not digits.exists():
        write_digits_imagefolder(digits, image_size=16)
    weights, directions = save_tiny_biggan(root / "biggan", num_classes=CLASSES)
    return digits, weights, directions


def tiny_job(assets: tuple[Path, Path, Path], output_dir: "Path | str", name: str, seeds_per_class: int,
             interventional: dict, train: dict, datagen: dict | None = None, shards_root: str | None = None) -> JobConfig:
    """A job generating ``CLASSES * seeds_per_class * 2`` images and training on original + interventional
    (its store under ``output_dir``, or at ``shards_root``, e.g. an ``s3://`` prefix)."""
    digits, weights, directions = assets
    return JobConfig.model_validate({
        "name": name,
        "output_dir": str(output_dir),
        "shards": {"max_samples_per_shard": 20, "prepare": {"original": {"source": str(digits), "unit_size": 900}},
                   **({"root": shards_root} if shards_root else {})},
        "datagen": {
            "actors": 1, "device": "cpu", "generator": {"weights": str(weights)}, "directions": {"path": str(directions)},
            "strategy": {"kind": "intervention", "truncation": 0.5, "top_k": 4, "components_per_seed": IMAGES_PER_SEED,
                         "seeds_per_class": seeds_per_class},
            "seeds_per_unit": 2, "batch_size": 4, **(datagen or {}),
        },
        "train": {
            "model": "resnet18", "num_classes": CLASSES, "report_every_steps": 1,
            "data": {"crop_size": 16, "resize_size": 16}, "optimizer": {"decay_unit": "steps"},
            "streams": {"original": {"batch_size": 8}, "interventional": {"loss_weight": 0.2, **interventional}},
            **train,
        },
    })


def wait_for(condition: Callable[[], object], what: str, timeout_s: float = 600) -> object:
    """Poll ``condition`` until it returns something true (a hang guard, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)
    return value


def assert_store_exact(store_dir: "Path | S3Url", stream: str = "interventional", planned: int | None = None) -> list[str]:
    """The store verifies, the stream's keys are unique (and ``planned`` many); returns the keys.

    A store on object storage is checked on a local copy (``shards.mirror``), by the same code.
    """
    if isinstance(store_dir, S3Url):
        with mirrored_store(store_dir) as copy:
            return assert_store_exact(copy.root, stream, planned)
    findings, _ = verify_store(store_dir)
    assert not [finding for finding in findings if finding.is_problem], findings
    keys = [sample["__key__"] for sample in iter_samples([path for path, _ in committed_shards(store_dir / stream)])]
    assert not [key for key, count in Counter(keys).items() if count > 1]
    if planned is not None:
        assert len(keys) == planned
        assert all(progress.done for progress in Manifest(store_dir / stream).unit_progress().values())
    return keys
