"""A trained generator on disk, shared by the CVAE and the CGN: a directory with ``config.json``
(which generator, its architecture) and ``pytorch_model.bin`` (a plain state_dict, read with
``torch.load(weights_only=True)`` so no pickled object ever runs), and an id from the weights' hash.
A generator genint trained also holds ``training.json``: the fingerprint of what it was trained
with and on, so a job whose settings or data changed trains it again instead of reusing it.
"""

import hashlib
import json
from pathlib import Path
from typing import TypeVar

import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from datagen.errors import DatagenError
from datagen.generators.checks import check_state_dict_keys, first_line, load_state_dict_file
from shards.files import write_durably, write_durably_with

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "pytorch_model.bin"
TRAINING_RECORD_NAME = "training.json"
# Recorded while a generator's files are being replaced: it matches no fingerprint.
INCOMPLETE_TRAINING = "incomplete"

Architecture = TypeVar("Architecture", bound=BaseModel)


def weights_digest(architecture: BaseModel, model: nn.Module) -> str:
    """sha256 over the architecture and every tensor (name, dtype, shape, bytes), in key order."""
    digest = hashlib.sha256(architecture.model_dump_json().encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_generator_files(directory: Path, kind: str, architecture: BaseModel, model: nn.Module) -> None:
    """Write ``config.json`` and ``pytorch_model.bin`` into ``directory`` (created if needed).

    Each file is written under a temporary name, fsynced and renamed (weights first), so a crash
    never leaves a half-written checkpoint under the real name.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"generator": kind, "architecture": architecture.model_dump(mode="json")}
    weights = {name: tensor.cpu() for name, tensor in model.state_dict().items()}
    write_durably_with(directory / WEIGHTS_NAME, lambda handle: torch.save(weights, handle))
    write_durably(directory / CONFIG_NAME, (json.dumps(config, indent=2) + "\n").encode())


def write_training_record(directory: Path, fingerprint: str) -> None:
    """Record beside a generator genint trained the fingerprint of its training (settings and data)."""
    write_durably(Path(directory) / TRAINING_RECORD_NAME, (json.dumps({"training_sha256": fingerprint}) + "\n").encode())


def read_training_record(directory: Path) -> str | None:
    """The training fingerprint recorded beside a saved generator; None when there is none (weights
    genint did not train, or trained before records existed).

    Raises:
        DatagenError: a record that is not one genint writes, naming the file.
    """
    path = Path(directory) / TRAINING_RECORD_NAME
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatagenError(f"{path}: cannot read the generator's training record ({first_line(error)})") from None
    fingerprint = record.get("training_sha256") if isinstance(record, dict) else None
    if not isinstance(fingerprint, str):
        raise DatagenError(f"{path}: not a genint training record (expected {{\"training_sha256\": \"...\"}})")
    return fingerprint


def read_architecture(path: Path, kind: str, label: str, model: type[Architecture]) -> Architecture:
    """The architecture in a ``config.json`` of generator ``kind``, or a one-line DatagenError naming the file and field.

    Args:
        label: what the generator is called in messages ("CVAE", "CGN").
    """
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatagenError(f"{path}: {label} config not found (a saved {label} has {CONFIG_NAME} and {WEIGHTS_NAME})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatagenError(f"{path}: cannot read {label} config ({first_line(error)})") from None
    if not isinstance(config, dict) or config.get("generator") != kind:
        found = config.get("generator") if isinstance(config, dict) else type(config).__name__
        raise DatagenError(f'{path}: not a {label} config (expected "generator": "{kind}", got {found!r})')
    try:
        return model.model_validate(config.get("architecture"))
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(["architecture", *(str(part) for part in first["loc"])])
        raise DatagenError(f"{path}: {field}: {first['msg']} (got {first.get('input')!r})") from None


def load_weights_into(model: nn.Module, directory: Path, label: str) -> nn.Module:
    """Fill ``model`` from ``directory/pytorch_model.bin``; every key and shape must match.

    Raises:
        DatagenError: the weights file is missing, unreadable or does not match the model.
    """
    weights_path = Path(directory) / WEIGHTS_NAME
    if not weights_path.is_file():
        raise DatagenError(f"{weights_path}: {label} weights not found (expected {WEIGHTS_NAME} beside {CONFIG_NAME})")
    state = load_state_dict_file(weights_path, f"{label} weights")
    check_state_dict_keys(model, state, str(weights_path))
    model.load_state_dict(state, strict=True)
    return model


def generator_directory(directory: Path, label: str) -> Path:
    """``directory`` as a Path, or a DatagenError when it is not a directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DatagenError(
            f"{directory}: {label} directory not found; train one with `genint generator train` or set datagen.generator.weights"
        )
    return directory
