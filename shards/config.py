"""Configuration of the shard store and of static streams prepared from ImageFolder trees."""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, DirectoryPath, Field, PositiveInt


class PrepareConfig(BaseModel):
    """A static stream built from an ImageFolder tree before anything trains on it."""

    model_config = ConfigDict(extra="forbid")

    source: DirectoryPath = Field(description="ImageFolder root: one subdirectory per class")
    seed: int = Field(default=0, description="shuffle seed; a resumed prepare must use the same")
    unit_size: PositiveInt = Field(default=1000, description="images per resumable work unit")
    workers: PositiveInt = Field(default=1, description="processes decoding images")


class ShardStoreConfig(BaseModel):
    """Where shards roll, and which static streams to prepare."""

    model_config = ConfigDict(extra="forbid")

    root: Path | None = Field(
        default=None, description="store directory (one subdirectory per stream); default OUTPUT/shards; jobs may share one"
    )
    max_samples_per_shard: PositiveInt = 1000
    max_bytes_per_shard: PositiveInt = 256 * 2**20
    prepare: dict[str, PrepareConfig] = Field(
        default_factory=dict, description="stream name -> ImageFolder source"
    )
