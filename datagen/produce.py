"""Turning a work unit into shard samples: specs -> latents -> edits -> images -> encoded samples.

No Ray here: the actor wraps this, and tests and benchmarks call it directly.
"""

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image

from datagen.directions import Directions
from datagen.errors import DatagenError
from datagen.generators.base import CounterfactualGenerator, Generator
from datagen.generators.cgn import MECHANISMS
from datagen.strategies import (
    SampleSpec,
    StrategyConfig,
    component_ranges,
    counterfactual_specs,
    intervene,
    seed_specs,
    with_partners,
)
from datagen.units import WorkUnit
from shards.sample import partner_field


@dataclass(frozen=True)
class ImageEncoding:
    """How generated images are stored in shards."""

    image_format: Literal["jpg", "png"] = "jpg"
    jpeg_quality: int = 95

    def encode(self, image: torch.Tensor) -> bytes:
        """A (3, H, W) tensor in [0, 1] as JPEG or PNG bytes (deterministic for the same pixels)."""
        pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        buffer = io.BytesIO()
        if self.image_format == "jpg":
            Image.fromarray(pixels).save(buffer, format="JPEG", quality=self.jpeg_quality)
        else:
            Image.fromarray(pixels).save(buffer, format="PNG")
        return buffer.getvalue()


class UnitProducer:
    """Makes the samples of work units for one stream with one generator and strategy."""

    def __init__(
        self,
        generator: Generator,
        strategy: StrategyConfig,
        directions: Directions | None,
        job_seed: int,
        stream: str,
        batch_size: int,
        encoding: ImageEncoding = ImageEncoding(),
    ):
        if strategy.kind == "counterfactual" and not isinstance(generator, CounterfactualGenerator):
            raise DatagenError(f"{generator.generator_id} cannot compose counterfactuals (its mechanisms share one class): "
                               "use datagen.generator.kind cgn or another strategy")
        self.generator = generator
        self.strategy = strategy
        self.directions = directions
        self.ranges = component_ranges(strategy, directions)
        self.job_seed = job_seed
        self.stream = stream
        self.batch_size = batch_size
        self.encoding = encoding
        if directions is not None:
            self.lat_comp = torch.from_numpy(directions.lat_comp).float()
            self.lat_mean = torch.from_numpy(directions.lat_mean).float()
            self.directions_hash = directions.content_hash

    def specs(self, unit: WorkUnit) -> list[SampleSpec]:
        """The unit's samples in order; sample i depends only on (unit, i)."""
        return [spec for seed_index in range(unit.seed_start, unit.seed_stop) for spec in self._seed_specs(unit.class_index, seed_index)]

    def _seed_specs(self, class_index: int, seed_index: int) -> list[SampleSpec]:
        if self.strategy.kind == "counterfactual":
            return counterfactual_specs(self.strategy, self.generator.num_classes, self.job_seed, class_index, seed_index)
        specs = seed_specs(self.strategy, self.ranges, self.job_seed, class_index, seed_index)
        if self.strategy.pairs is not None:
            specs = with_partners(specs, self.strategy.pairs, self.generator.num_classes, self.job_seed)
        return specs

    def latents(self, specs: list[SampleSpec], partners: bool = False) -> torch.Tensor:
        """The (edited) latents of a batch of specs, or of their partners (the same edit of the partner's latent)."""
        if self.strategy.kind == "counterfactual":
            seeds = torch.tensor([spec.mechanism_seeds for spec in specs], dtype=torch.int64)
            return self.generator.counterfactual_latents(seeds, self.strategy.truncation)
        seeds = [spec.partner_latent_seed if partners else spec.latent_seed for spec in specs]
        latents = self.generator.sample_latents(seeds, self.strategy.truncation)
        if self.strategy.kind == "observational":
            return latents
        # One component per image (the reference code's volume: m components per seed, one image each).
        directions = self.lat_comp[[spec.components[0] for spec in specs]]
        offsets = torch.tensor([spec.offsets[0] for spec in specs], dtype=torch.float32)
        return intervene(latents, directions, offsets, self.lat_mean)

    def provenance(self, spec: SampleSpec, unit: WorkUnit) -> dict:
        record = {
            "stream": self.stream,
            "class": spec.class_index,
            "seed": spec.seed_index,
            "latent_seed": spec.latent_seed,
            "truncation": self.strategy.truncation,
            "strategy": self.strategy.preset or self.strategy.kind,
            "components": list(spec.components),
            "offsets": list(spec.offsets),
            "generator": self.generator.generator_id,
            "unit": unit.unit_id,
        }
        if self.directions is not None:
            record["directions_sha256"] = self.directions_hash
        if spec.mechanism_classes:
            record["mechanism_classes"] = dict(zip(MECHANISMS, spec.mechanism_classes))
            record["mechanism_seeds"] = dict(zip(MECHANISMS, spec.mechanism_seeds))
        if spec.partner_class is not None:
            record["partner"] = {"kind": self.strategy.pairs.partner, "class": spec.partner_class, "latent_seed": spec.partner_latent_seed}
        return record

    def images(self, specs: list[SampleSpec], partners: bool = False) -> torch.Tensor:
        """The images of a batch of specs (counterfactuals compose each mechanism's own class), or of their partners."""
        latents = self.latents(specs, partners)
        if self.strategy.kind == "counterfactual":
            classes = torch.tensor([spec.mechanism_classes for spec in specs], dtype=torch.int64)
            return self.generator.generate_counterfactuals(latents, classes)
        classes = torch.tensor([spec.partner_class if partners else spec.class_index for spec in specs])
        return self.generator.generate(latents, classes, self.strategy.truncation)

    def samples(self, unit: WorkUnit, start: int = 0) -> Iterator[dict]:
        """Encoded samples of ``unit`` from its ``start``-th on, generated a batch at a time."""
        specs = self.specs(unit)[start:]
        for first in range(0, len(specs), self.batch_size):
            batch = specs[first : first + self.batch_size]
            images = self.images(batch)
            partners = self.images(batch, partners=True) if self.strategy.pairs is not None else [None] * len(batch)
            for spec, image, partner in zip(batch, images, partners):
                sample = {
                    "__key__": spec.key,
                    self.encoding.image_format: self.encoding.encode(image),
                    "cls": spec.class_index,
                    "json": self.provenance(spec, unit),
                }
                if partner is not None:
                    sample[partner_field(self.encoding.image_format)] = self.encoding.encode(partner)
                    sample[partner_field("cls")] = spec.partner_class
                yield sample
