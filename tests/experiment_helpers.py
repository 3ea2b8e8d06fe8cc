"""Shortened experiment runs for tests: the `--set` flags that put a run in its own directory."""

from pathlib import Path


def set_flags(output_dir: Path, settings: list[str]) -> list[str]:
    """``--set output_dir=... --set S`` for every setting ``S``, as `genint experiment` takes them."""
    return [argument for setting in [f"output_dir={output_dir}", *settings] for argument in ("--set", setting)]
