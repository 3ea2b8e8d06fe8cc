"""Settings of the correlation analysis (GenInt, seed 000, Fig. 3), apart from its code so a job
config validates without torch or scikit-learn.

The analysis asks whether the nuisances a generator can intervene on predict the label in a stream:
a regressor learns image -> intervention offsets on a generated stream (the samples' provenance
records which components were set to which offsets), predicts those nuisances for every image of
each analysed stream, and a small MLP learns nuisances -> label there. Its accuracy on a held-out
share of the stream, as a multiple of chance, is the stream's correlation.
"""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt, field_validator

from shards.config import StreamName
from trainers.config import ARCHITECTURES
from trainers.limits import MAX_BATCH_SIZE, MAX_SEED, MAX_STEPS

# Every analysed stream is held in memory decoded at this side; past it a small stream is gigabytes.
MAX_ANALYSIS_IMAGE_SIZE_PX = 512
MAX_MLP_LAYERS = 16
MAX_MLP_WIDTH = 65_536
MAX_CPU_THREADS = 1_024
# The regressor's own small strided CNN (cluster/nuisance_regressor.py), or one of trainers' classifiers.
REGRESSOR_MODELS = ("nuisance_cnn", *ARCHITECTURES)


class NuisanceRegressorConfig(BaseModel):
    """The image -> offsets regressor (the paper: a ResNet-34 with an L1 loss, 80/20 split)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: Literal[REGRESSOR_MODELS] = Field(  # type: ignore[valid-type]
        default="nuisance_cnn", description="nuisance_cnn (four strided conv blocks), small_cnn or a ResNet (the paper: "
        "resnet34); one output per component")
    epochs: PositiveInt = Field(default=15, le=MAX_STEPS, description="passes over the regressor stream's training share")
    lr: PositiveFloat = Field(default=1e-3, le=10.0, description="Adam learning rate")
    batch_size: PositiveInt = Field(default=64, le=MAX_BATCH_SIZE)
    held_out_fraction: float = Field(default=0.2, gt=0, lt=1, description="share of the regressor stream held out to "
                                     "report its L1 error (the paper: 80/20; reported only, nothing is chosen by it)")


class NuisanceClassifierConfig(BaseModel):
    """The predicted nuisances -> label MLP (scikit-learn's MLPClassifier on standardised nuisances)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    hidden_layers: list[PositiveInt] = Field(
        default=[64, 64, 64], min_length=1, max_length=MAX_MLP_LAYERS,
        description="hidden widths. The paper's 4-layer MLP with 512 hidden units is [512, 512, 512] (and the output); "
        "64 wide fits a few nuisances in a tenth of the time (3 s a digits stream on one core, 30 s at 512)")
    max_epochs: PositiveInt = Field(default=200, le=MAX_STEPS, description="Adam passes over the fitting share")
    lr: PositiveFloat = Field(default=1e-3, le=10.0)
    weight_decay: float = Field(default=1e-4, ge=0, le=10.0, description="L2 penalty (MLPClassifier's alpha)")

    @field_validator("hidden_layers")
    @classmethod
    def _widths_bounded(cls, widths: list[int]) -> list[int]:
        if max(widths) > MAX_MLP_WIDTH:
            raise ValueError(f"widths must be <= {MAX_MLP_WIDTH} (got {max(widths)})")
        return widths


class CorrelationConfig(BaseModel):
    """``genint analyse correlation``: which stream teaches the regressor, which streams are analysed."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    regressor_stream: StreamName = Field(default="interventional", description="a generated stream whose samples record "
                                         "intervention components and offsets")
    streams: list[StreamName] = Field(default=["original", "observational", "interventional"], min_length=1, max_length=100,
                                      description="the streams whose nuisance-label correlation is measured")
    evaluation_stream: StreamName | None = Field(
        default=None, description="also score each stream's MLP on this stream's held-out share (the paper's Fig. 3 scores "
        "on ImageNet validation); None: each stream's own held-out share only")
    held_out_fraction: float = Field(default=0.2, gt=0, lt=1, description="share of each stream held out from its MLP; "
                                     "the multiple of chance is measured there")
    image_size: PositiveInt = Field(default=32, le=MAX_ANALYSIS_IMAGE_SIZE_PX, description="side the images are resized to, px")
    regressor: NuisanceRegressorConfig = Field(default_factory=NuisanceRegressorConfig)
    classifier: NuisanceClassifierConfig = Field(default_factory=NuisanceClassifierConfig)
    seed: NonNegativeInt = Field(default=0, le=MAX_SEED, description="fixes the splits, the regressor's and the MLPs' initialisation")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="where the regressor trains; auto: CUDA if visible")
    cpu_threads: PositiveInt | None = Field(
        default=1, le=MAX_CPU_THREADS, description="torch and BLAS threads during the analysis; None: as they are. Its small "
        "models run fastest on one: a regressor step 9 ms on one core of the 2-core VM and 107 ms on two while other work "
        "shared them; an MLP fit 3 s and 21 s")
    output: Path | None = Field(default=None, description="the JSON results file (default: OUTPUT_DIR/correlation.json)")

    @field_validator("streams")
    @classmethod
    def _streams_once(cls, streams: list[str]) -> list[str]:
        if len(set(streams)) != len(streams):
            raise ValueError(f"must not repeat a stream (got {streams})")
        return streams
