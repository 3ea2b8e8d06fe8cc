"""Settings of the GANSpace directions (``genint directions``), apart from the PCA code so a job
config validates without torch or scikit-learn."""

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

from datagen.limits import MAX_BATCH_SIZE, MAX_CLASSES, MAX_DIMENSIONS, MAX_ITERATIONS, MAX_SAMPLES, MAX_SEED

# Latent i's seed is seed * 10**9 + i (i < MAX_SAMPLES), which must stay a valid seed.
MAX_DIRECTIONS_SEED = (MAX_SEED - MAX_SAMPLES) // 10**9


class DirectionsConfig(BaseModel):
    """How the directions are computed (``genint directions``) or where they are read from."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    path: Path | None = Field(default=None, description="directions .npz; default OUTPUT/directions.npz")
    samples: PositiveInt = Field(default=1_000_000, le=MAX_SAMPLES, description="latents through the PCA (GANSpace: 1e6)")
    components: PositiveInt = Field(default=80, le=MAX_DIMENSIONS, description="principal components kept")
    batch_size: PositiveInt = Field(default=1000, le=MAX_BATCH_SIZE)
    regression_samples: PositiveInt = Field(default=100_000, le=MAX_SAMPLES, description="latents in the least-squares fit")
    class_index: int = Field(default=0, ge=0, lt=MAX_CLASSES, description="the one class sampled (the layer is linear in [z; class])")
    seed: int = Field(default=0, ge=0, le=MAX_DIRECTIONS_SEED, description="latent i is drawn from seed * 10**9 + i")
    checkpoint_every_batches: PositiveInt = Field(default=20, le=MAX_ITERATIONS)

    @model_validator(mode="after")
    def _batches_hold_the_components(self) -> "DirectionsConfig":
        if self.batch_size < self.components:
            raise ValueError(f"batch_size must be >= components for incremental PCA (got {self.batch_size} < {self.components})")
        return self
