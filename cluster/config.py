"""The job config: each package's model composed into one, loaded from YAML and validated.

Every error is one line naming the file, the dotted YAML path, the bad value and what is
allowed, e.g. ``job.yaml: train.streams.interventional.batch_size must be >= 0 (got -64)``.
Relative paths in a config are relative to the working directory the job starts in.
"""

import hashlib
import json
import re
import tempfile
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cluster.config_yaml import MAX_NESTING, echo, parse_yaml, read_config_file, shorten
from cluster.correlation_config import CorrelationConfig
from cluster.errors import ClusterError, ConfigError
from cluster.explain_config import ExplainConfig
from cluster.strategy_search_config import StrategySearchConfig
from datagen.config import DatagenConfig
from shards.config import ShardStoreConfig, StoreRoot
from shards.locations import S3Url, StreamLocation
from trainers.config import TrainConfig

ConfigModel = TypeVar("ConfigModel", bound=BaseModel)

RESOLVED_CONFIG_FILE = "config.yaml"
CONFIG_HASH_FILE = "config.sha256"
MAX_RESOLVED_CONFIG_BYTES = 1 << 20
MAX_NAME_CHARS = 100
# Problems listed in one error; a file with thousands says how many more there are.
MAX_PROBLEMS = 3


class MetricsConfig(BaseModel):
    """Where the job's Prometheus endpoint listens."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    host: str = Field(default="127.0.0.1", description="bind address; anything but loopback exposes the metrics")
    port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port (printed at start)")


class JobConfig(BaseModel):
    """A whole genint job."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", max_length=MAX_NAME_CHARS)
    output_dir: StoreRoot = Field(description="the job's directory, or s3://BUCKET/PREFIX: then its shards (unless "
                                              "shards.root says otherwise), resolved config and checkpoints go to the "
                                              "bucket and the rest to a local scratch directory (see local_output_dir)")
    shards: ShardStoreConfig = Field(default_factory=ShardStoreConfig)
    datagen: DatagenConfig = Field(default_factory=DatagenConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    strategy_search: StrategySearchConfig | None = Field(default=None, description="`genint strategy score | search`: the causal bound log P(x|z)")
    correlation: CorrelationConfig | None = Field(default=None, description="`genint analyse correlation` (paper Fig. 3); absent: its defaults")
    explain: ExplainConfig | None = Field(default=None, description="`genint explain` (seed 004's property gradients, GradCAM); absent: its defaults")

    @property
    def local_output_dir(self) -> Path:
        """Where the job writes its local files: ``output_dir`` itself, or for a bucket a scratch
        directory under the system temp directory (``TMPDIR``), the same for every run of the job
        on this machine (DeepSpeed, Ray Train and the generators write local files only)."""
        if not isinstance(self.output_dir, S3Url):
            return self.output_dir
        digest = hashlib.sha256(str(self.output_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / "genint-scratch" / f"{self.name}-{digest}"

    @property
    def checkpoint_url(self) -> S3Url | None:
        """The bucket prefix training's checkpoints are mirrored to (a job whose output_dir is a bucket)."""
        return self.output_dir.join("train", "checkpoints") if isinstance(self.output_dir, S3Url) else None

    @property
    def store_dir(self) -> StreamLocation:
        """Root of the job's shard store (one subdirectory per stream), or its ``s3://`` prefix."""
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


def _dotted(location: tuple) -> str:
    """A pydantic error location as the YAML path (a bad mapping key is named by the key itself)."""
    return ".".join(shorten(part) for part in location if part != "[key]")


def _describe(error: dict, model: type[BaseModel]) -> str:
    """One pydantic error as ``<path> <problem> (got <value>)``, the value cut to a few dozen characters."""
    location = tuple(part for part in error["loc"])
    path = _dotted(location)
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
        "less_than": lambda: f"must be < {context.get('lt')}",
        "literal_error": lambda: f"must be one of {context.get('expected')}",
        "string_pattern_mismatch": lambda: f"must match {context.get('pattern')}",
        "string_too_long": lambda: f"must be at most {context.get('max_length')} characters",
        "too_long": lambda: f"must have at most {context.get('max_length')} items",
        "path_not_directory": lambda: "must be an existing directory",
        "path_not_file": lambda: "must be an existing file",
    }.get(kind, lambda: error["msg"].removeprefix("Value error, ").replace("Input should be", "must be", 1))()
    # A whole section as "got" would swamp the line; its path says enough.
    got = "" if isinstance(error["input"], dict) else f" (got {echo(error['input'])})"
    # A check across fields (a model validator) has no location: its message names the fields.
    return f"{path} {problem}{got}" if path else f"{problem}{got}"


def _set_override(raw: dict, assignment: str) -> None:
    """Apply one ``a.b.c=value`` override (value parsed as YAML, so typed) to the raw dict."""
    path, separator, text = assignment.partition("=")
    source = f"--set {echo(assignment)}"
    if not separator or not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", path):
        raise ConfigError(f"{source}: expected KEY.PATH=VALUE, e.g. train.model=resnet18")
    *parents, leaf = path.split(".")
    if len(parents) >= MAX_NESTING:
        raise ConfigError(f"{source}: the key path is deeper than {MAX_NESTING} levels")
    node = raw
    for depth, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            above = ".".join(parents[: depth + 1])
            raise ConfigError(f"{source}: {above} is a value, not a section")
        node = child
    node[leaf] = parse_yaml(text, source, numbered=False)


def load_config(path: Path, overrides: list[str] = (), model: type[ConfigModel] = JobConfig) -> ConfigModel:
    """Read, override and validate a job config (or another config ``model``, e.g. an experiment's).

    Args:
        path: the YAML file (bounded as ``cluster.config_yaml`` says).
        overrides: ``a.b.c=value`` assignments applied before validation.
        model: the pydantic model the file must satisfy.

    Raises:
        ConfigError: one line naming the file, the YAML path, the value and what is allowed.
    """
    path = Path(path)
    raw = read_config_file(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping (got {type(raw).__name__})")
    for assignment in overrides:
        _set_override(raw, assignment)
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        problems = error.errors()
        lines = [f"{path}: {_describe(detail, model)}" for detail in problems[:MAX_PROBLEMS]]
        if len(problems) > MAX_PROBLEMS:
            lines.append(f"and {len(problems) - MAX_PROBLEMS} more problems")
        raise ConfigError("\n".join(lines)) from None


def resolved_yaml(config: JobConfig) -> str:
    """The config with every default filled in, as YAML."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


# Sections that configure analyses of a job's data (genint strategy, genint analyse): they change
# nothing the job generates or trains, so they are not part of its hash.
ANALYSIS_SECTIONS = frozenset({"strategy_search", "correlation", "explain"})


def config_hash(config: JobConfig) -> str:
    """A stable sha256 of the resolved config without its analysis sections (recorded in every
    manifest line; an experiment reuses a finished arm while its job's hash is unchanged)."""
    canonical = json.dumps(config.model_dump(mode="json", exclude=set(ANALYSIS_SECTIONS)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_output_dir_is_this_jobs(config: JobConfig) -> None:
    """Refuse, before anything is written, an ``output_dir`` holding another job's resolved config.

    A job is its name: a rerun (maybe with an edited config: more steps, another batch size)
    continues in its output_dir, on a directory and on a bucket alike, while a job of another name
    there would overwrite that job's config and mix its checkpoints and streams with that job's.

    Raises:
        ClusterError: the output_dir's ``config.yaml`` names another job, or is not a job config.
    """
    from shards.stores import read_stream_file  # boto3 only for a job on a bucket

    raw = read_stream_file(config.output_dir, RESOLVED_CONFIG_FILE, "resolved config", MAX_RESOLVED_CONFIG_BYTES)
    if raw is None:
        return
    try:
        recorded = parse_yaml(raw.decode("utf-8", errors="replace"), RESOLVED_CONFIG_FILE)
    except ConfigError:
        recorded = None
    other = recorded.get("name") if isinstance(recorded, dict) else None
    if other == config.name:
        return
    held = f"job {other!r}'s files" if isinstance(other, str) else f"a {RESOLVED_CONFIG_FILE} that names no job"
    hint = f" (or name this job {other!r} to continue that one)" if isinstance(other, str) else ""
    raise ClusterError(f"output_dir {config.output_dir}: holds {held}; give job {config.name!r} its own output_dir{hint}")


def save_resolved(config: JobConfig) -> str:
    """Write the resolved config and its hash into the job's output directory (and, for a bucket,
    its local scratch directory too); return the hash."""
    directory = config.local_output_dir
    directory.mkdir(parents=True, exist_ok=True)
    digest = config_hash(config)
    files = {RESOLVED_CONFIG_FILE: f"# sha256: {digest}\n" + resolved_yaml(config), CONFIG_HASH_FILE: digest + "\n"}
    for name, text in files.items():
        (directory / name).write_text(text)
    if isinstance(config.output_dir, S3Url):
        from shards.stores import write_stream_file  # boto3 only for a job on a bucket

        for name, text in files.items():
            write_stream_file(config.output_dir, name, text.encode())
    return digest
