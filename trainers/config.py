"""Configuration of training: the model and the streams mixed in each step (Eq. 1)."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, field_validator


class StreamConfig(BaseModel):
    """One stream's share of every step and its weight in the loss."""

    model_config = ConfigDict(extra="forbid")

    batch_size: NonNegativeInt = Field(description="samples per step; 0 never reads the stream")
    loss_weight: NonNegativeFloat = Field(default=1.0, description="lambda of this stream in Eq. 1")
    when_short: Literal["wait", "reuse", "skip"] = Field(
        default="wait", description="what a step does when a growing stream has too little data"
    )
    wait_timeout_s: PositiveFloat = 600.0
    augment: Literal["standard", "additional"] = Field(
        default="standard", description="standard: random-resized crop + flip; additional: also rotation and colour jitter"
    )


class TrainConfig(BaseModel):
    """The classifier and its stream mix."""

    model_config = ConfigDict(extra="forbid")

    model: Literal["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"] = "resnet152"
    streams: dict[str, StreamConfig] = Field(
        default_factory=lambda: {"original": StreamConfig(batch_size=256)}
    )

    @field_validator("streams")
    @classmethod
    def _some_stream_is_read(cls, streams: dict[str, StreamConfig]) -> dict[str, StreamConfig]:
        if not any(stream.batch_size > 0 for stream in streams.values()):
            raise ValueError("needs at least one stream with batch_size > 0")
        return streams
