"""Configuration of the shard store and of static streams prepared from ImageFolder trees."""

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, DirectoryPath, Field, PlainSerializer, PositiveInt, StringConstraints

from shards.locations import S3Url, StorageError, StreamLocation, stream_location
from shards.names import MAX_NAME_CHARS, STREAM_NAME_PATTERN

# A stream name becomes a directory under the store root: checked before anything is written.
StreamName = Annotated[str, StringConstraints(pattern=STREAM_NAME_PATTERN, max_length=MAX_NAME_CHARS)]



def _store_root(value: object) -> object:
    """``s3://...`` text as an S3Url, other text as a Path (pydantic reports a ValueError with the config path)."""
    if not isinstance(value, str | Path):
        return value
    try:
        return stream_location(value)
    except StorageError as error:
        raise ValueError(str(error)) from None


# A store root: a directory, or ``s3://bucket/prefix`` on object storage; saved and hashed as its text.
StoreRoot = Annotated[Path | S3Url, BeforeValidator(_store_root), PlainSerializer(str, return_type=str)]

# Bounds no real store reaches; past them a value is a typo (or hostile), refused with the bound.
MAX_SEED = 2**63 - 1
MAX_PREPARE_WORKERS = 1024
MAX_UNIT_IMAGES = 10**7
MAX_SAMPLES_PER_SHARD = 10**6
MAX_BYTES_PER_SHARD = 2**36


class PrepareConfig(BaseModel):
    """A static stream built from an ImageFolder tree before anything trains on it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    source: DirectoryPath = Field(description="ImageFolder root: one subdirectory per class")
    seed: int = Field(default=0, ge=0, le=MAX_SEED, description="shuffle seed; a resumed prepare must use the same")
    unit_size: PositiveInt = Field(default=1000, le=MAX_UNIT_IMAGES, description="images per resumable work unit")
    workers: PositiveInt = Field(default=1, le=MAX_PREPARE_WORKERS, description="processes decoding images")


class ShardStoreConfig(BaseModel):
    """Where shards roll, and which static streams to prepare."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    root: StoreRoot | None = Field(
        default=None, description="store directory or s3://BUCKET/PREFIX (one subdirectory or prefix per stream); "
                                  "default OUTPUT/shards; jobs may share one"
    )
    max_samples_per_shard: PositiveInt = Field(default=1000, le=MAX_SAMPLES_PER_SHARD)
    max_bytes_per_shard: PositiveInt = Field(default=256 * 2**20, le=MAX_BYTES_PER_SHARD)
    prepare: dict[StreamName, PrepareConfig] = Field(
        default_factory=dict, description="stream name -> ImageFolder source"
    )


@dataclass(frozen=True)
class StoreRef:
    """The store a job's writers write to: its root, the shard limits and the job's config hash.

    One picklable value that crosses to Ray actors, built once from the job's ``shards`` config.

    Args:
        root: the store directory (one subdirectory per stream), or its ``s3://`` prefix.
        max_samples_per_shard, max_bytes_per_shard: when a writer rolls to its next shard.
        config_hash: recorded on every manifest line the writers commit.
    """

    root: StreamLocation
    max_samples_per_shard: int
    max_bytes_per_shard: int
    config_hash: str

    @classmethod
    def of(cls, config: ShardStoreConfig, root: "Path | S3Url", config_hash: str) -> "StoreRef":
        """The store of a job whose ``shards`` config is ``config``, at its resolved ``root``."""
        return cls(stream_location(root), config.max_samples_per_shard, config.max_bytes_per_shard, config_hash)

    def stream_dir(self, stream: str) -> StreamLocation:
        """The directory (or ``s3://`` prefix) of one stream of the store."""
        return self.root / stream
