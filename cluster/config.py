"""The job config: each package's model composed into one, loaded from YAML and validated.

Every error is one line naming the file, the dotted YAML path, the bad value and what is
allowed, e.g. ``job.yaml: train.streams.interventional.batch_size must be >= 0 (got -64)``.
Relative paths in a config are relative to the working directory the job starts in.
"""

import hashlib
import json
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cluster.errors import ConfigError
from datagen.config import DatagenConfig
from shards.config import ShardStoreConfig
from trainers.config import TrainConfig

ConfigModel = TypeVar("ConfigModel", bound=BaseModel)

RESOLVED_CONFIG_FILE = "config.yaml"
CONFIG_HASH_FILE = "config.sha256"


class MetricsConfig(BaseModel):
    """Where the job's Prometheus endpoint listens."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="bind address; anything but loopback exposes the metrics")
    port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port (printed at start)")


class JobConfig(BaseModel):
    """A whole genint job."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    output_dir: Path
    shards: ShardStoreConfig = Field(default_factory=ShardStoreConfig)
    datagen: DatagenConfig = Field(default_factory=DatagenConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

    @property
    def store_dir(self) -> Path:
        """Root of the job's shard store (one subdirectory per stream)."""
        return self.shards.root or self.output_dir / "shards"


def _field_model(annotation: Any, key: str) -> Any:
    """The type reached by indexing ``annotation`` (a model or ``dict[str, X]``) with ``key``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            found = _field_model(option, key)
            if found is not None:
                return found
        return None
    if origin is dict:
        return typing.get_args(annotation)[1]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and key in annotation.model_fields:
        return annotation.model_fields[key].annotation
    return None


def _allowed_keys(model: type[BaseModel], location: tuple) -> list[str]:
    annotation: Any = model
    for part in location:
        annotation = _field_model(annotation, str(part))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _describe(error: dict, model: type[BaseModel]) -> str:
    """One pydantic error as ``<path> <problem> (got <value>)``."""
    location = tuple(part for part in error["loc"])
    path = ".".join(str(part) for part in location) or "<top level>"
    context = error.get("ctx", {})
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(model, location[:-1]))
        return f"{path} is not a known key (allowed: {allowed})"
    if kind == "missing":
        return f"{path} is required"
    problem = {
        "greater_than_equal": lambda: f"must be >= {context.get('ge')}",
        "greater_than": lambda: f"must be > {context.get('gt')}",
        "less_than_equal": lambda: f"must be <= {context.get('le')}",
        "literal_error": lambda: f"must be one of {context.get('expected')}",
        "string_pattern_mismatch": lambda: f"must match {context.get('pattern')}",
        "path_not_directory": lambda: "must be an existing directory",
        "path_not_file": lambda: "must be an existing file",
    }.get(kind, lambda: error["msg"].removeprefix("Value error, ").replace("Input should be", "must be", 1))()
    # A whole section as "got" would swamp the line; its path says enough.
    got = "" if isinstance(error["input"], dict) else f" (got {error['input']!r})"
    return f"{path} {problem}{got}"


def _set_override(raw: dict, assignment: str) -> None:
    """Apply one ``a.b.c=value`` override (value parsed as YAML, so typed) to the raw dict."""
    path, separator, text = assignment.partition("=")
    if not separator or not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", path):
        raise ConfigError(f"--set {assignment!r}: expected KEY.PATH=VALUE, e.g. train.model=resnet18")
    *parents, leaf = path.split(".")
    node = raw
    for depth, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            above = ".".join(parents[: depth + 1])
            raise ConfigError(f"--set {assignment!r}: {above} is a value, not a section")
        node = child
    try:
        node[leaf] = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {assignment!r}: value is not valid YAML ({error.problem})") from None


def load_config(path: Path, overrides: list[str] = (), model: type[ConfigModel] = JobConfig) -> ConfigModel:
    """Read, override and validate a job config (or another config ``model``, e.g. an experiment's).

    Args:
        path: the YAML file.
        overrides: ``a.b.c=value`` assignments applied before validation.
        model: the pydantic model the file must satisfy.

    Raises:
        ConfigError: one line naming the file, the YAML path, the value and what is allowed.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config ({error})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(error, 'problem', error)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping (got {type(raw).__name__})")
    for assignment in overrides:
        _set_override(raw, assignment)
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        lines = [f"{path}: {_describe(detail, model)}" for detail in error.errors()]
        raise ConfigError("\n".join(lines)) from None


def resolved_yaml(config: JobConfig) -> str:
    """The config with every default filled in, as YAML."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def config_hash(config: JobConfig) -> str:
    """A stable sha256 of the resolved config (recorded in every manifest line)."""
    canonical = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def save_resolved(config: JobConfig) -> str:
    """Write the resolved config and its hash into the job's output directory; return the hash."""
    config.output_dir.mkdir(parents=True, exist_ok=True)
    digest = config_hash(config)
    (config.output_dir / RESOLVED_CONFIG_FILE).write_text(f"# sha256: {digest}\n" + resolved_yaml(config))
    (config.output_dir / CONFIG_HASH_FILE).write_text(digest + "\n")
    return digest
