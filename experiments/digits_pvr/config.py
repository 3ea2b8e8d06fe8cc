"""The digits pointer-value benchmark's config (seed 003): grid counts per stream, the arms, the IIT
objective they share and the classifier's training."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

from datagen.limits import MAX_SAMPLES, MAX_SEED
from experiments.harness.config import ExperimentBase
from trainers.config import ObjectiveConfig, TrainConfig
from trainers.limits import MAX_BATCH_SIZE, MAX_IIA_TRIPLES

# The seed's Table 1 rows: multitask and iit_multitask add one linear head per aligned quadrant (its Eq. 8).
ArmName = Literal["standard", "augmentation", "iit", "multitask", "iit_multitask", "untyped_iit"]
ARMS: tuple[ArmName, ...] = ("standard", "augmentation", "iit", "multitask", "iit_multitask", "untyped_iit")


class GridCounts(BaseModel):
    """How many grids each stream holds (the digit images are split first: no image is in two splits)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    seed: int = Field(default=3, ge=0, le=MAX_SEED, description="fixes the image pools and every grid")
    train: PositiveInt = Field(default=6000, le=MAX_SAMPLES, description="grids of the training stream (original)")
    validation: PositiveInt = Field(default=1000, le=MAX_SAMPLES, description="drawn like training: what settings are chosen on")
    test: PositiveInt = Field(default=1000, le=MAX_SAMPLES, description="grids whose pointed-at cell holds a held-out digit")
    augmented: PositiveInt = Field(default=6000, le=MAX_SAMPLES, description="the augmentation arm's swapped training grids")


class ExperimentConfig(ExperimentBase):
    """Everything one digits-PVR run needs; each arm and seed becomes one genint job."""

    kind: Literal["digits_pvr"] = Field(default="digits_pvr", description="which experiment this config runs (experiments/registry.py)")
    arms: list[ArmName] = Field(default=list(ARMS), min_length=1)
    data: GridCounts = Field(default_factory=GridCounts)
    batch_size: PositiveInt = Field(default=64, le=MAX_BATCH_SIZE, description="grids per step (augmentation: half swapped)")
    iit: ObjectiveConfig = Field(default_factory=lambda: ObjectiveConfig(name="interchange_intervention"), description=(
        "the IIT arms' objective (untyped_iit sets typed: false); causal_model must be pointer_value"))
    multitask_weight: PositiveFloat = Field(default=1.0, description=(
        "the multitask and iit_multitask arms' weight of the heads' loss (seed 003's Eq. 8, the sum over the four quadrants)"))
    iia_triples: PositiveInt = Field(default=4000, le=MAX_IIA_TRIPLES, description="(base, source, variable) triples sampled per split for IIA")
    train: TrainConfig = Field(description="the classifier and its optimisation; each arm sets streams, objective and seed")

    @model_validator(mode="after")
    def _objective_fits(self) -> "ExperimentConfig":
        if self.iit.name != "interchange_intervention" or self.iit.causal_model != "pointer_value":
            raise ValueError(f"iit must be name interchange_intervention with causal_model pointer_value "
                             f"(got {self.iit.name}, {self.iit.causal_model})")
        if self.train.num_classes != 10:
            raise ValueError(f"train.num_classes must be 10, the pointed-at digit (got {self.train.num_classes})")
        return self
