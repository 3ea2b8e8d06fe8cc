"""Settings of an intervention strategy (the paper's t, k, s) and its named presets, apart from
the sampling code so a job config validates without torch.

A strategy can also be read from a YAML file (``{file: PATH}``, e.g. the one ``genint strategy
search`` writes), relative to the working directory like every path of a config.
"""

from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)

from datagen.limits import MAX_DIMENSIONS, MAX_SAMPLES

PRESETS: dict[str, dict] = {
    # The paper's chosen strategy (tightest causal bound), at the reference code's volume.
    "paper": dict(kind="intervention", truncation=1.0, top_k=60, scale=1.0, components_per_seed=5, offsets_per_component=1, seeds_per_class=1000),
    # Fig. 5 strength presets (truncation 0.5, 2000 images per class).
    "none": dict(kind="observational", truncation=0.5, seeds_per_class=2000),
    "weak": dict(kind="intervention", truncation=0.5, top_k=20, components_per_seed=4, offsets_per_component=10, offset_range=(-5.0, 5.0), seeds_per_class=50),
    "medium": dict(kind="intervention", truncation=0.5, top_k=20, components_per_seed=2, offsets_per_component=2, offset_range=(-7.0, 7.0), seeds_per_class=500),
    "strong": dict(kind="intervention", truncation=0.5, top_k=20, components_per_seed=2, offsets_per_component=1, offset_range=(-9.0, 9.0), seeds_per_class=1000),
    # The "GAN augmentation" baseline: plain sampling at truncation 0.2.
    "gan-augmentation": dict(kind="observational", truncation=0.2, seeds_per_class=2000),
}
# A strategy file holds a dozen settings; the bound stops reading a huge file put in its place.
MAX_STRATEGY_FILE_BYTES = 2**16


def read_strategy_file(path: Path) -> dict:
    """The settings in a strategy YAML file, checked as a strategy on their own.

    Raises:
        ValueError: one line naming the file: missing, not a regular file, too large, not YAML,
            not a mapping, naming another file, or not a valid strategy.
    """
    path = Path(path)
    if not path.is_file():  # missing, a directory, a FIFO (opening it would wait for a writer)
        raise ValueError(f"file {path}: {'not found' if not path.exists() else 'not a regular file'}")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_STRATEGY_FILE_BYTES + 1)
        if len(data) > MAX_STRATEGY_FILE_BYTES:
            raise ValueError(f"file {path}: larger than {MAX_STRATEGY_FILE_BYTES} bytes, so not a strategy file")
        settings = yaml.safe_load(data.decode("utf-8"))
    except OSError as error:
        raise ValueError(f"file {path}: cannot read it ({error.strerror or error})") from None
    except (UnicodeDecodeError, yaml.YAMLError) as error:
        problem = getattr(error, "problem", None) or type(error).__name__
        raise ValueError(f"file {path}: not a YAML strategy ({problem})") from None
    if not isinstance(settings, dict):
        raise ValueError(f"file {path}: a strategy file must be a YAML mapping (got {type(settings).__name__})")
    if "file" in settings:
        raise ValueError(f"file {path}: names another strategy file; a strategy file holds the settings themselves")
    try:
        StrategyConfig.model_validate(settings)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        problem = "is not a known key" if first["type"] == "extra_forbidden" else first["msg"].removeprefix("Value error, ")
        raise ValueError(f"file {path}: {where + ' ' if where else ''}{problem}") from None
    return settings


class PairsConfig(BaseModel):
    """Counterfactual pairs: every image is generated with a partner of another class (seed 002's pairs)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    partner: Literal["other_class", "random"] = Field(default="other_class", description=(
        "other_class: the same (edited) latent with another class drawn uniformly; random: the control, an unrelated "
        "latent (its own seed, the same edit) with another class"))


class StrategyConfig(BaseModel):
    """A strategy: a preset name or a strategy file, optionally with fields overridden, or every field spelled out."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    file: Path | None = Field(
        default=None, exclude=True,
        description="a strategy YAML file (as `genint strategy search` writes): its settings, then the ones beside `file`",
    )
    preset: Literal["paper", "none", "weak", "medium", "strong", "gan-augmentation"] | None = None
    kind: Literal["intervention", "observational", "counterfactual"] = Field(default="intervention", description=(
        "intervention: GANSpace edits of the latent; observational: plain samples; counterfactual: a CGN's shape "
        "of the unit's class with texture and background classes drawn per image (datagen.generator.kind cgn)"))
    truncation: float = Field(default=1.0, gt=0, le=1, description="t: scales the latents and picks BigGAN's batch-norm statistics")
    top_k: PositiveInt = Field(default=60, le=MAX_DIMENSIONS, description="k: components are chosen among the top k")
    scale: NonNegativeFloat = Field(default=1.0, description="s: offsets are drawn within s x each component's range")
    components_per_seed: PositiveInt = Field(default=5, le=MAX_DIMENSIONS, description="components chosen per seed; one image each")
    offsets_per_component: PositiveInt = Field(default=1, le=MAX_DIMENSIONS)
    offset_range: tuple[float, float] | None = Field(default=None, description="fixed offset interval instead of per-component ranges")
    ranges: Literal["auto", "reference", "spread"] = Field(
        default="auto", description="per-component ranges: the reference code's (BigGAN-deep-256) or from the latents' spread"
    )
    spread_factor: NonNegativeFloat = Field(default=3.0, description="spread ranges are +- this many stdevs along the direction")
    seeds_per_class: PositiveInt = Field(default=1000, le=MAX_SAMPLES)
    counterfactuals_per_shape: PositiveInt = Field(default=10, le=MAX_DIMENSIONS, description=(
        "counterfactual: images per shape seed, each with its own texture and background (class and noise); the paper: 10"))

    pairs: PairsConfig | None = Field(default=None, exclude_if=lambda pairs: pairs is None, description=(  # unset: older configs keep their hashes
        "give every image a counterfactual partner of another class (shards carry it as cf.<image> and cf.cls); "
        "intervention and observational strategies"))

    @model_validator(mode="before")
    @classmethod
    def _expand_file_and_preset(cls, raw):
        if isinstance(raw, str):
            raw = {"preset": raw}
        if isinstance(raw, dict) and isinstance(raw.get("file"), (str, Path)):
            raw = {**read_strategy_file(raw["file"]), **raw}
        if isinstance(raw, dict) and raw.get("preset") in PRESETS:
            raw = {**PRESETS[raw["preset"]], **raw}
        return raw

    @model_validator(mode="after")
    def _components_fit(self) -> "StrategyConfig":
        if self.kind == "intervention" and self.components_per_seed > self.top_k:
            raise ValueError(f"components_per_seed must be <= top_k (got {self.components_per_seed} > {self.top_k})")
        if self.offset_range is not None and self.offset_range[0] > self.offset_range[1]:
            raise ValueError(f"offset_range must be [low, high] (got {list(self.offset_range)})")
        if self.pairs is not None and self.kind == "counterfactual":
            raise ValueError("pairs needs kind intervention or observational (a CGN's shape-swap pairs are not built yet)")
        return self

    @property
    def images_per_seed(self) -> int:
        if self.kind == "counterfactual":
            return self.counterfactuals_per_shape
        return 1 if self.kind == "observational" else self.components_per_seed * self.offsets_per_component
