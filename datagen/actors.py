"""The generator actor: one generator and one shard writer, making the work units it is handed.

The class is plain Python (the pool wraps it with ``ray.remote``), so it also runs in-process.
A restarted actor reuses its writer id, and the writer removes what its predecessor left
uncommitted.
"""

from dataclasses import dataclass
from pathlib import Path

from datagen.config import DatagenConfig
from datagen.directions import load_directions
from datagen.generators.loading import load_generator, pick_device
from datagen.produce import ImageEncoding, UnitProducer
from datagen.unit_writer import UnitReport, UnitWriter
from datagen.units import WorkUnit
from shards.config import StoreRef


@dataclass(frozen=True)
class ActorSettings:
    """What an actor needs besides its writer id (picklable, sent once to every actor)."""

    datagen: DatagenConfig
    store: StoreRef
    weights: str
    directions_path: Path


class GeneratorActor:
    """Generates work units into the ``datagen.stream`` stream through its own shard writer."""

    def __init__(self, settings: ActorSettings, writer_id: str):
        config = settings.datagen
        generator = load_generator(
            config.generator.kind, settings.weights, pick_device(config.device), config.generator.precision
        )
        directions = None
        if config.strategy.kind == "intervention":
            directions = load_directions(settings.directions_path, latent_dim=generator.latent_dim)
        self.producer = UnitProducer(
            generator, config.strategy, directions, config.seed, config.stream, config.batch_size,
            ImageEncoding(config.image_format, config.jpeg_quality),
        )
        self.writer = UnitWriter(settings.store, config.stream, writer_id)

    def run_unit(self, unit: WorkUnit) -> UnitReport:
        """Generate the part of ``unit`` the manifest does not hold yet and mark the unit done."""
        return self.writer.write_unit(unit.unit_id, lambda start: self.producer.samples(unit, start))

    def close(self) -> int:
        """Commit everything open; return the shards committed since the last report."""
        return self.writer.close()
