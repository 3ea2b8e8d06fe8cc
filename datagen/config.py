"""Configuration of the generation service (the generator actor pool)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt


class DatagenConfig(BaseModel):
    """How many generator actors run and on which device."""

    model_config = ConfigDict(extra="forbid")

    actors: NonNegativeInt = Field(default=1, description="generator actors; 0 turns generation off")
    device: Literal["auto", "cpu", "cuda"] = "auto"
