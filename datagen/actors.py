"""The generator actor: one generator and one shard writer, making the work units it is handed.

The class is plain Python (the pool wraps it with ``ray.remote``), so it also runs in-process.
A unit resumes after the samples the manifest already holds for it, whichever writer committed
them; a restarted actor reuses its writer id, and the writer removes what its predecessor left
uncommitted.
"""

import time
from dataclasses import dataclass
from pathlib import Path

from datagen.config import DatagenConfig
from datagen.directions import load_directions
from datagen.generators.loading import load_generator, pick_device
from datagen.produce import ImageEncoding, UnitProducer
from datagen.units import WorkUnit
from shards.manifest import Manifest
from shards.writer import ShardWriter


@dataclass(frozen=True)
class ActorSettings:
    """What an actor needs besides its writer id (picklable, sent once to every actor)."""

    datagen: DatagenConfig
    store_dir: Path
    weights: str
    directions_path: Path
    config_hash: str
    max_samples_per_shard: int
    max_bytes_per_shard: int


@dataclass(frozen=True)
class UnitReport:
    """What one ``run_unit`` call did."""

    unit_id: str
    writer_id: str
    images: int
    shards_committed: int
    seconds: float


class GeneratorActor:
    """Generates work units into the ``datagen.stream`` stream through its own shard writer."""

    def __init__(self, settings: ActorSettings, writer_id: str):
        config = settings.datagen
        self.writer_id = writer_id
        self.stream_dir = Path(settings.store_dir) / config.stream
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
        self.settings = settings
        self._committed = 0
        self._reported = 0
        self.writer: ShardWriter | None = None

    def _writer(self) -> ShardWriter:
        # Opened on first use and again after close, so the pool can hand out more units after a close.
        if self.writer is None:
            settings = self.settings
            self.writer = ShardWriter(
                self.stream_dir, settings.datagen.stream, self.writer_id, settings.config_hash,
                max_samples=settings.max_samples_per_shard, max_bytes=settings.max_bytes_per_shard,
                on_commit=self._count_commit,
            )
        return self.writer

    def _count_commit(self, record) -> None:
        # Runs on the writer's committer thread; an int increment is atomic enough for a counter.
        if record.kind == "shard":
            self._committed += 1

    def run_unit(self, unit: WorkUnit) -> UnitReport:
        """Generate the part of ``unit`` the manifest does not hold yet and mark the unit done."""
        started, images = time.perf_counter(), 0
        writer = self._writer()
        progress = Manifest(self.stream_dir).unit_progress().get(unit.unit_id)
        if progress is None or not progress.done:
            for sample in self.producer.samples(unit, start=progress.samples if progress else 0):
                writer.write(sample, unit=unit.unit_id)
                images += 1
            writer.end_unit(unit.unit_id)
        return UnitReport(unit.unit_id, self.writer_id, images, self._newly_committed(), time.perf_counter() - started)

    def _newly_committed(self) -> int:
        """Shards committed since the last report (commits land on the writer's thread, later)."""
        committed = self._committed
        newly, self._reported = committed - self._reported, committed
        return newly

    def close(self) -> int:
        """Commit everything open; return the shards committed since the last report."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        return self._newly_committed()
