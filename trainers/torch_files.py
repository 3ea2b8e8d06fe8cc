"""Torch files read as data: ``torch.load(weights_only=True)`` with one-line errors naming the file."""

import stat
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from shards.unpickling import refusal_reason
from trainers.errors import TrainError

NOT_LOADABLE = "cannot load a state_dict (not a torch file: {})"


def load_plain(path: Path, what: str, allowed_globals: Sequence[type] = (), map_location: Any = "cpu") -> Any:
    """``torch.load`` of a file that must hold plain data (tensors, numbers, strings, containers, and
    the ``allowed_globals`` classes): ``weights_only=True`` unpickles nothing else, so no code in the
    file ever runs.

    Args:
        path: the file.
        what: what it is, for messages ("weights", "checkpoint").
        allowed_globals: classes the file may also hold (``torch.serialization.safe_globals``).
        map_location: as ``torch.load``'s.
    Returns:
        what the file holds.
    Raises:
        TrainError: naming ``what`` and the file: unreadable, not a regular file, empty or not loadable.
    """
    try:
        info = path.stat()
    except OSError as error:
        raise TrainError(f"{what} {path}: cannot read ({error.strerror or type(error).__name__})") from None
    if not stat.S_ISREG(info.st_mode):
        raise TrainError(f"{what} {path}: not a regular file")
    if info.st_size == 0:
        raise TrainError(f"{what} {path}: cannot load a state_dict (the file is empty)")
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(list(allowed_globals)):
            # torch warns (on stderr) about pickle protocols other than its own before refusing them.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except OSError as error:
        raise TrainError(f"{what} {path}: cannot read ({error.strerror or type(error).__name__})") from None
    except Exception as error:  # torch raises many types for a non-torch file (EOFError, KeyError, RuntimeError...)
        raise TrainError(f"{what} {path}: {refusal_reason(error, NOT_LOADABLE)}") from None
