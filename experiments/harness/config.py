"""What every experiment's config has: its name, output directory, classifier seeds, arms validated
once each, and the shard store under the output directory. Each experiment adds its ``kind``, its
own ``arms`` field (its arm names) and the rest."""

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, field_validator

from cluster.config import MAX_NAME_CHARS
from trainers.limits import MAX_SEED as MAX_TRAIN_SEED

MAX_SEEDS_PER_ARM = 100


class ExperimentBase(BaseModel):
    """The fields and checks the experiment configs share; subclasses declare ``arms: list[TheirArmName]``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", max_length=MAX_NAME_CHARS)
    output_dir: Path
    seeds: list[Annotated[NonNegativeInt, Field(le=MAX_TRAIN_SEED)]] = Field(
        default=[0, 1, 2], min_length=1, max_length=MAX_SEEDS_PER_ARM, description="classifier seeds per arm")

    # check_fields=False: ``arms`` is declared by each subclass with its own arm names.
    @field_validator("arms", check_fields=False)
    @classmethod
    def _arms_once(cls, arms: list[str]) -> list[str]:
        if len(set(arms)) != len(arms):
            raise ValueError(f"must not repeat an arm (got {arms})")
        return arms

    @property
    def store_dir(self) -> Path:
        return self.output_dir / "shards"
