"""Real genint checkpoints for tests: a small_cnn DeepSpeed engine on CPU, trained a few steps and
saved by ``trainers.checkpoint.save``, and the ways a hostile or careless user changes them."""

import functools
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainers import checkpoint
from trainers.checkpoint_files import MODEL_STATES_NAME, RECORD_NAME
from trainers.config import TrainConfig
from trainers.engine import build_engine, local_process_group
from trainers.memory_source import MemorySourceFactory, colour_classes
from trainers.objectives import build_objective
from trainers.step import train_step

CLASSES, SIZE = 3, 16
CONFIG = TrainConfig.model_validate({
    "model": "small_cnn", "num_classes": CLASSES, "zero_stage": 1, "seed": 3,
    "optimizer": {"lr": 0.01, "decay_unit": "steps", "decay_every": 100},
    "streams": {"original": {"batch_size": 4}},
})
# What `genint eval` needs besides the checkpoint: the model flags and a tiny image folder.
EVAL_FLAGS = ["--suite", "imagefolder", "--arch", "small_cnn", "--num-classes", str(CLASSES)]


@dataclass
class TinyTraining:
    """An engine and its source, as a worker holds them."""

    engine: object
    sources: dict

    def steps(self, first: int, count: int) -> list[float]:
        """Train ``count`` steps numbered from ``first``; their losses."""
        objective = build_objective(CONFIG.objective)
        return [train_step(self.engine, objective, self.sources, {"original": 1.0}, step, 0).loss for step in range(first, first + count)]

    def train_and_save(self, directory: Path, steps: int = 2) -> Path:
        """Train ``steps`` steps from step 1, saving after each (keep 2); returns ``directory``."""
        for step in range(1, steps + 1):
            self.steps(step, 1)
            checkpoint.save(self.engine, directory, step, self.sources, keep=2)
        return directory


@contextmanager
def tiny_training() -> Iterator[TinyTraining]:
    """A one-process group and a fresh small_cnn engine with a memory source."""
    with local_process_group():
        engine = build_engine(CONFIG, torch.device("cpu"))
        factory = MemorySourceFactory({"original": colour_classes(32, CLASSES, SIZE, 0)})
        yield TinyTraining(engine, {"original": factory("original", CONFIG.streams["original"], 0, 1, torch.device("cpu"))})


_PRISTINE = tempfile.TemporaryDirectory(prefix="genint-checkpoint-")


@functools.cache
def pristine_checkpoint() -> Path:
    """A checkpoints directory genint wrote (steps 1 and 2), built once per test process; copy it, never change it."""
    with tiny_training() as training:
        return training.train_and_save(Path(_PRISTINE.name) / "checkpoints")


@pytest.fixture(scope="module")
def training() -> Iterator[TinyTraining]:
    """A module's tiny training (import it into the test module to use it)."""
    pristine_checkpoint()  # built first: it needs a process group of its own
    with tiny_training() as training:
        yield training


def copy_checkpoint(destination: Path) -> Path:
    """A copy of ``pristine_checkpoint()`` at ``destination``."""
    shutil.copytree(pristine_checkpoint(), destination)
    return destination


def latest_step_dir(directory: Path) -> Path:
    return directory / (directory / "latest").read_text().strip()


def write_images(root: Path) -> Path:
    """An image folder of CLASSES classes x 2 PNGs (what `genint eval --suite imagefolder` reads)."""
    images, _ = colour_classes(2 * CLASSES, CLASSES, SIZE, 0)
    for index, image in enumerate(images):
        folder = root / f"class{index % CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


class RunsCommand:
    """A pickled object whose unpickling runs a shell command (here: creating a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def plant_pickle(path: Path, marker: Path) -> None:
    """Replace the torch file ``path`` with one that keeps its content and adds a command-running object."""
    content = torch.load(path, weights_only=True) if path.name == MODEL_STATES_NAME else {}
    content["planted"] = RunsCommand(marker)
    torch.save(content, path)


def forge_record(step_dir: Path) -> None:
    """Rewrite the step's record so it matches the files as they are now (what an attacker could do)."""
    files = {
        path.name: {"bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        for path in sorted(step_dir.iterdir()) if path.name != RECORD_NAME
    }
    (step_dir / RECORD_NAME).write_text(json.dumps({"format": 1, "files": files}))


def flip_one_byte(path: Path, offset: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
