"""Which experiment a config runs: its ``kind`` names one of the packages below.

An experiment package ``experiments.<name>`` holds ``config.ExperimentConfig`` (its config model,
validated before anything heavy is imported) and ``experiment.run(config, fresh)``, which runs it
and returns what the console shows. Adding a benchmark is adding its package, one line here and a
YAML file in ``configs/experiments/`` with its ``kind:``.
"""

from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from rich.console import RenderableType

from cluster.config import load_config
from cluster.config_yaml import echo
from cluster.errors import ConfigError

EXPERIMENTS = {
    "cgn_digits": "experiments.cgn_digits",
    "colored_digits": "experiments.colored_digits",
    "digits_pvr": "experiments.digits_pvr",
}


class _Kind(BaseModel):
    """Only the ``kind`` of an experiment config; the rest is its own model's to check."""

    model_config = ConfigDict(extra="ignore")

    kind: Any = None


@dataclass(frozen=True)
class Experiment:
    """An experiment config, validated by the model of the experiment its ``kind`` names."""

    kind: str
    config: BaseModel

    def run(self, fresh: bool) -> list[RenderableType]:
        """Run the experiment (``fresh``: delete its run directory first); return what the console shows."""
        return import_module(f"{EXPERIMENTS[self.kind]}.experiment").run(self.config, fresh)


def load_experiment(path: Path, overrides: list[str] = ()) -> Experiment:
    """Read an experiment config, find its experiment from ``kind`` and validate it with that one's model.

    Raises:
        ConfigError: one line: the file as ``load_config`` checks it, a missing or unknown ``kind``
        (naming the known ones), or the experiment's own model refusing it.
    """
    kind = load_config(path, overrides, model=_Kind).kind
    known = ", ".join(EXPERIMENTS)
    if kind is None:
        raise ConfigError(f"{path}: kind is required: it names the experiment (known kinds: {known})")
    if not isinstance(kind, str) or kind not in EXPERIMENTS:
        raise ConfigError(f"{path}: kind must be one of the known kinds: {known} (got {echo(kind)})")
    model = import_module(f"{EXPERIMENTS[kind]}.config").ExperimentConfig
    return Experiment(kind, load_config(path, overrides, model=model))
