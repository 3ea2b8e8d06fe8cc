"""Strict weight loading: a weights file is read as data (never as code) and must match the model
key for key and shape for shape."""

import stat
import warnings
import zipfile
from pathlib import Path

import torch

from datagen.errors import DatagenError
from shards.unpickling import refusal_reason

_SHOWN = 3  # names listed per problem; a mismatched BigGAN can differ in hundreds of keys


def _shape(value: object) -> tuple[int, ...] | str:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def _listed(names: list[str]) -> str:
    more = f", ... (+{len(names) - _SHOWN})" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def check_state_dict_keys(model: torch.nn.Module, state: dict, where: str) -> None:
    """Raise one DatagenError naming missing, unexpected and wrongly shaped keys, if any."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = [
        f"{name} {_shape(state[name])} != {_shape(expected[name])}"
        for name in sorted(set(expected) & set(state))
        if _shape(state[name]) != _shape(expected[name])
    ]
    problems = [
        f"{label}: {_listed(names)}"
        for label, names in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", reshaped))
        if names
    ]
    if problems:
        raise DatagenError(f"{where}: weights do not match the model config ({'; '.join(problems)})")


def first_line(error: BaseException) -> str:
    """An exception's first line (or its type when it has no message), for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_state_dict_file(path: Path, what: str, mmap: bool = False) -> dict[str, torch.Tensor]:
    """A state_dict read with ``torch.load(weights_only=True)``: tensors only, no pickled code ever runs.

    Args:
        path: the weights file (links are followed: caches link to their blobs).
        what: what the weights are, for messages ("BigGAN weights").
        mmap: map the file instead of reading it (large weights of which only a part is used).
    Returns:
        the state_dict, on CPU.
    Raises:
        DatagenError: ``<path>: cannot read <what> (<why>)``: missing, not a regular file, empty,
            not a torch file, pickled objects, or not a dict of named tensors.
    """

    def refused(reason: str) -> DatagenError:
        return DatagenError(f"{path}: cannot read {what} ({reason})")

    try:
        info = path.stat()
    except OSError as error:
        raise refused(error.strerror or type(error).__name__) from None
    if not stat.S_ISREG(info.st_mode):
        raise refused("not a regular file")
    if info.st_size == 0:
        raise refused("the file is empty")
    try:
        with warnings.catch_warnings():
            # torch warns (on stderr) about pickle protocols other than its own before refusing them.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            # mmap needs torch's zip format; an older (plain pickle) file is read whole instead.
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
    except OSError as error:
        raise refused(error.strerror or type(error).__name__) from None
    except Exception as error:  # torch raises many types for a non-torch file (EOFError, KeyError, RuntimeError...)
        raise refused(refusal_reason(error, "not a loadable state_dict: {}")) from None
    if not isinstance(state, dict) or not all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()):
        found = type(state).__name__ if not isinstance(state, dict) else "a dict with other keys or values"
        raise refused(f"expected a state_dict, a dict of named tensors; got {found}")
    return state
