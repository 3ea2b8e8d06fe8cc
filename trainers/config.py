"""Configuration of training: the model, the streams mixed in each step (Eq. 1), the objective,
the optimiser and its schedule, checkpoints and the DeepSpeed pass-through."""

import math
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from shards.config import StreamName
from trainers.alignment import Alignment
from trainers.causal_variables import CAUSAL_OUTPUT_CLASSES, CAUSAL_VARIABLES
from trainers.data.config import LoaderConfig
from trainers.limits import (
    MAX_BATCH_SIZE,
    MAX_CLASSES,
    MAX_RETAINED,
    MAX_SEED,
    MAX_STEPS,
    MAX_TIMEOUT_S,
    MAX_WORKERS,
)

# The classifiers trainers/models.py builds: torchvision's ResNets and a small CNN for small images.
TORCHVISION_ARCHITECTURES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
ARCHITECTURES = (*TORCHVISION_ARCHITECTURES, "small_cnn", "grid_cnn")
Architecture = Literal[ARCHITECTURES]  # type: ignore[valid-type]


class StreamConfig(BaseModel):
    """One stream's share of every step and its weight in the loss."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    batch_size: NonNegativeInt = Field(le=MAX_BATCH_SIZE, description="samples per step; 0 never reads the stream")
    loss_weight: NonNegativeFloat = Field(default=1.0, description="lambda of this stream in Eq. 1")
    when_short: Literal["wait", "reuse", "skip"] = Field(
        default="wait", description="what a step does when a growing stream has too little data"
    )
    wait_timeout_s: PositiveFloat = Field(default=600.0, le=MAX_TIMEOUT_S)
    augment: Literal["standard", "additional", "none"] = Field(
        default="standard", description="standard: random-resized crop + flip; additional: also rotation and colour jitter; "
        "none: decode and resize only (images whose layout carries meaning, e.g. pointer-value grids)"
    )
    # exclude_if: left out of the resolved config while unset, so configs from before pairs keep their hashes.
    pairs: bool = Field(
        default=False, exclude_if=lambda pairs: not pairs,
        description="every sample carries its counterfactual partner: a batch holds batch_size samples and their partners",
    )


class ObjectiveConfig(BaseModel):
    """Which loss turns the mixed batch's logits into the training loss."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: Literal["cross_entropy_mix", "irm", "interchange_intervention", "gradient_supervision"] = Field(
        default="cross_entropy_mix",
        description="cross_entropy_mix: Eq. 1; irm: Eq. 1 plus the IRMv1 penalty with each stream an environment; "
        "interchange_intervention: Eq. 1 plus seed 003's IIT loss (needs each sample's causal variables); "
        "gradient_supervision: Eq. 1 plus seed 002's gradient supervision on the pairs of streams with pairs: true",
    )
    irm_weight: NonNegativeFloat = Field(default=1.0, description="irm: penalty weight once annealing is over")
    irm_anneal_steps: NonNegativeInt = Field(default=0, le=MAX_STEPS, description="irm: steps with penalty weight 1 before irm_weight")
    causal_model: str = Field(default="pointer_value", description="interchange_intervention: the registered causal model")
    alignment_module: str = Field(
        default="maxpool", description="interchange_intervention: dotted path of the module whose output is aligned (resnet: maxpool)"
    )
    alignment_sites: Literal["quadrants"] | list[list[tuple[NonNegativeInt, NonNegativeInt]]] = Field(
        default="quadrants",
        description="interchange_intervention: quadrants of a (C, H, W) output, or per variable a [start, stop) range per dimension",
    )
    typed: bool = Field(
        default=True, description="interchange_intervention: also swap between variables of one type (the seed's Eqn. 7); false: same variable only"
    )
    iit_weight: NonNegativeFloat = Field(default=1.0, description="interchange_intervention: weight of the IIT loss (0: no intervened forward)")
    multitask_weight: NonNegativeFloat = Field(  # left out while at its default, so older configs keep their hashes
        default=0.0, exclude_if=lambda value: value == 0.0, description=(
            "interchange_intervention: weight of seed 003's multi-task loss (its Eq. 8: a linear head per aligned site "
            "predicting that site's variable, trained with the network); 0: no heads"))
    gs_lambda: NonNegativeFloat = Field(  # left out while at its default, so older configs keep their hashes
        default=1.0, exclude_if=lambda value: value == 1.0, description="gradient_supervision: lambda, the weight of L_GS (the seed: 0.01 .. 20)"
    )

    @field_validator("causal_model")
    @classmethod
    def _causal_model_is_registered(cls, name: str) -> str:
        if name not in CAUSAL_VARIABLES:
            raise ValueError(f"is not a registered causal model (known: {', '.join(CAUSAL_VARIABLES)})")
        return name

    @model_validator(mode="after")
    def _one_site_per_variable(self) -> "ObjectiveConfig":
        sites, variables = self.alignment.site_count, CAUSAL_VARIABLES[self.causal_model]
        if self.name == "interchange_intervention" and sites != len(variables):
            raise ValueError(f"alignment_sites gives {sites} sites but causal model {self.causal_model} has {len(variables)} variables")
        if self.multitask_weight > 0 and self.name != "interchange_intervention":
            raise ValueError(f"multitask_weight {self.multitask_weight} needs name interchange_intervention (got {self.name}), "
                             "whose aligned sites the heads read")
        return self

    @property
    def alignment(self) -> Alignment:
        sites = self.alignment_sites
        return Alignment(self.alignment_module, sites if sites == "quadrants" else tuple(tuple(map(tuple, site)) for site in sites))


class OptimizerConfig(BaseModel):
    """The optimiser and its learning-rate schedule."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: Literal["sgd", "adamw"] = Field(default="sgd", description="sgd: the paper's; adamw: with linear warm-up")
    lr: PositiveFloat = Field(default=0.1, description="peak learning rate")
    momentum: NonNegativeFloat = Field(default=0.9, description="sgd momentum")
    weight_decay: NonNegativeFloat = Field(default=1e-4)
    decay_every: PositiveInt = Field(default=30, le=MAX_STEPS, description="sgd: multiply lr by decay_factor every this many units")
    decay_unit: Literal["epochs", "steps"] = Field(default="epochs", description="unit of decay_every")
    decay_factor: PositiveFloat = Field(default=0.1, le=1.0, description="sgd: lr multiplier at each decay")
    warmup_steps: NonNegativeInt = Field(default=0, le=MAX_STEPS, description="adamw: steps of linear warm-up to lr")


class TrainConfig(BaseModel):
    """The classifier, its stream mix and how it is optimised and checkpointed."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: Architecture = Field(
        default="resnet152", description="a torchvision ResNet, small_cnn (three conv blocks, for small images) or grid_cnn (the same blocks, a head that sees each quadrant)"
    )
    num_classes: PositiveInt = Field(default=1000, le=MAX_CLASSES, description="classifier outputs")
    pretrained: str | None = Field(
        default=None,
        description="fine-tune from torchvision weights by name (e.g. IMAGENET1K_V2) or a local state_dict file",
    )
    streams: dict[StreamName, StreamConfig] = Field(
        default_factory=lambda: {"original": StreamConfig(batch_size=256)}
    )
    data: LoaderConfig = Field(default_factory=LoaderConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    max_steps: PositiveInt = Field(default=1000, le=MAX_STEPS, description="optimiser steps of the whole run (across resumes)")
    steps_per_epoch: PositiveInt | None = Field(
        default=None, le=MAX_STEPS, description="steps that make an epoch; needed when optimizer.decay_unit is epochs"
    )
    zero_stage: Literal[0, 1] = Field(default=1, description="DeepSpeed ZeRO stage")
    gradient_clipping: NonNegativeFloat = Field(default=0.0, description="max gradient norm; 0 disables clipping")
    channels_last: bool = Field(default=True, description="CUDA only: NHWC memory format for convolutions")
    seed: NonNegativeInt = Field(default=0, le=MAX_SEED, description="seeds model init, RNGs and the loaders")
    checkpoint_every_steps: PositiveInt = Field(default=1000, le=MAX_STEPS, description="save a checkpoint every this many steps")
    keep_checkpoints: PositiveInt = Field(default=2, le=MAX_RETAINED, description="newest checkpoints kept on disk")
    report_every_steps: PositiveInt = Field(
        default=10, le=MAX_STEPS, description="steps between worker reports to the driver (each report syncs the workers)"
    )
    workers: PositiveInt = Field(
        default=1, le=MAX_WORKERS, description="Ray Train workers (data-parallel ranks); a change resumes from the latest checkpoint"
    )
    worker_resources: dict[str, NonNegativeFloat] | None = Field(
        default=None, description="Ray resources of each worker, e.g. {CPU: 4, trainer: 1}; None: Ray Train's default"
    )
    max_failures: NonNegativeInt = Field(
        default=3, le=MAX_RETAINED, description="worker-group restarts (from the latest checkpoint) before the run fails"
    )
    deepspeed: dict[str, Any] = Field(
        default_factory=dict, description="extra DeepSpeed config keys, merged last over the derived config"
    )

    @field_validator("deepspeed")
    @classmethod
    def _deepspeed_numbers_are_finite(cls, section: dict[str, Any]) -> dict[str, Any]:
        # Free-form, but it becomes DeepSpeed's JSON config, which has no inf or nan.
        pending = [("deepspeed", section)]
        while pending:  # the loader bounds the section's size and depth
            path, value = pending.pop()
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"must hold only finite numbers (train.{path} is {value})")
            children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
            pending.extend((f"{path}.{key}", child) for key, child in children)
        return section

    @field_validator("streams")
    @classmethod
    def _some_stream_is_read(cls, streams: dict[str, StreamConfig]) -> dict[str, StreamConfig]:
        if not any(stream.batch_size > 0 for stream in streams.values()):
            raise ValueError("needs at least one stream with batch_size > 0")
        return streams

    @model_validator(mode="after")
    def _pairs_objective_has_pairs(self) -> "TrainConfig":
        paired = [name for name, stream in self.active_streams.items() if stream.pairs]
        if self.objective.name == "gradient_supervision" and not paired:
            raise ValueError(f"objective.name gradient_supervision needs counterfactual pairs: set pairs: true on a stream of "
                             f"train.streams ({', '.join(self.active_streams)})")
        return self

    @model_validator(mode="after")
    def _classes_fit_the_causal_model(self) -> "TrainConfig":
        objective = self.objective
        classes = CAUSAL_OUTPUT_CLASSES[objective.causal_model]
        if objective.name == "interchange_intervention" and self.num_classes != classes:
            raise ValueError(f"num_classes must be {classes}, the outputs of causal model {objective.causal_model} "
                             f"(got {self.num_classes})")
        return self

    @property
    def causal_variables(self) -> tuple[str, ...]:
        """The causal variables every batch must carry (read from the samples' json): the causal model's under
        interchange interventions, none otherwise."""
        if self.objective.name != "interchange_intervention":
            return ()
        return CAUSAL_VARIABLES[self.objective.causal_model]

    @property
    def active_streams(self) -> dict[str, StreamConfig]:
        """The streams read each step (batch_size > 0), in config order."""
        return {name: stream for name, stream in self.streams.items() if stream.batch_size > 0}

    @property
    def micro_batch_size(self) -> int:
        """Samples in one mixed step on one worker: the summed stream batch sizes, a paired stream's twice (its partners)."""
        return sum(stream.batch_size * (2 if stream.pairs else 1) for stream in self.streams.values())
