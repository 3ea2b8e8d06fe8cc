"""Transfer actors: original samples take on the style of interventional ones (X_itr), unit by unit.

A transfer unit is a range of positions in the content stream's commit order (static, so fixed).
Style images come from a fixed pool: the samples of the first ``style_pool_units`` generation
units, which every actor reads once they are committed. Content sample i takes its style from
the pool member that a hash of (seed, content key) picks, so a unit's output depends only on the
unit and the pool, whichever actor makes it and whenever, and resumes like generation does.
"""

import hashlib
import json
import time
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

from datagen.errors import DatagenError
from datagen.generators.loading import pick_device
from datagen.transfer.config import TransferStageConfig
from datagen.transfer.samples import transfer_samples
from datagen.transfer.vgg import load_vgg_features
from datagen.unit_writer import UnitReport, UnitWriter
from shards.config import StoreRef
from shards.manifest import UnitTracker
from shards.reader import committed_shards, iter_samples


@dataclass(frozen=True)
class TransferUnit:
    """Content positions [start, stop) of the content stream."""

    start: int
    stop: int

    @property
    def unit_id(self) -> str:
        return f"t{self.start}-{self.stop}"


def plan_transfer_units(content_samples: int, samples_per_unit: int) -> list[TransferUnit]:
    return [TransferUnit(start, min(start + samples_per_unit, content_samples)) for start in range(0, content_samples, samples_per_unit)]


def content_sample_count(store_dir: Path, config: TransferStageConfig) -> int:
    """Content samples the transfer covers (the committed content stream, capped by ``max_samples``)."""
    total = sum(record.samples for _, record in committed_shards(Path(store_dir) / config.content_stream))
    return min(total, config.max_samples or total)


class StreamPositions:
    """Samples by position in a static stream's commit order, its shard list read once.

    The content stream is written before the transfer plans its units (it is static), so the list
    taken when an actor starts covers every unit; listing it per unit would cost every unit a pass
    over the whole manifest.
    """

    def __init__(self, stream_dir: Path):
        shards = committed_shards(stream_dir)
        self._paths = [path for path, _ in shards]
        self._starts = list(accumulate((record.samples for _, record in shards), initial=0))

    def read(self, start: int, stop: int) -> Iterator[dict]:
        """Samples at positions [start, stop), reading only the shards that hold them."""
        first = bisect_right(self._starts, start) - 1
        for path, shard_start in zip(self._paths[first:], self._starts[first:]):
            if shard_start >= stop:
                return
            for offset, sample in enumerate(iter_samples([path])):
                if start <= shard_start + offset < stop:
                    yield sample


def wait_for_style_pool(style_dir: Path, pool_units: list[str], timeout_s: float, poll_s: float = 1.0) -> list[dict]:
    """The style pool's samples sorted by key, once every pool unit is committed.

    Raises:
        DatagenError: when the pool units are not all committed within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    progress = UnitTracker(style_dir)
    while True:
        missing = [unit for unit in pool_units if not progress.refresh().is_done(unit)]
        if not missing:
            break
        if time.monotonic() > deadline:
            raise DatagenError(f"transfer: style units {missing[:3]} of {style_dir} not committed after {timeout_s:.0f} s")
        time.sleep(poll_s)
    wanted = set(pool_units)
    paths = [path for path, record in committed_shards(style_dir) if wanted & set(record.work_units)]
    pool = [sample for sample in iter_samples(paths) if _unit_of(sample) in wanted]
    return sorted(pool, key=lambda sample: sample["__key__"])


def _unit_of(sample: dict) -> str:
    return json.loads(sample["json"]).get("unit", "")


def pick_style(pool: list[dict], content_key: str, seed: int) -> dict:
    """The pool member a content sample takes its style from (a stable hash, not Python's salted one)."""
    digest = hashlib.sha256(f"{seed}:{content_key}".encode()).digest()
    return pool[int.from_bytes(digest[:8], "big") % len(pool)]


class TransferActor:
    """Transfers content units through its own shard writer (the ``stream`` of the stage config)."""

    def __init__(self, config: TransferStageConfig, store: StoreRef, pool_units: list[str], device: str, writer_id: str):
        self.config = config
        self.contents = StreamPositions(store.stream_dir(config.content_stream))
        gatys = config.gatys
        self.features = load_vgg_features(gatys.vgg_weights, [*gatys.style_layers, *gatys.content_layers], pick_device(device))
        self.pool = wait_for_style_pool(store.stream_dir(config.style_stream), pool_units, config.style_wait_timeout_s)
        self.writer = UnitWriter(store, config.stream, writer_id)

    def _samples(self, unit: TransferUnit, start: int) -> Iterator[dict]:
        contents = self.contents.read(unit.start + start, unit.stop)
        pairs = ((content, pick_style(self.pool, content["__key__"], self.config.gatys.seed)) for content in contents)
        return transfer_samples(pairs, self.features, self.config.gatys)

    def run_unit(self, unit: TransferUnit) -> UnitReport:
        """Transfer the part of ``unit`` the manifest does not hold yet and mark the unit done."""
        return self.writer.write_unit(unit.unit_id, lambda start: self._samples(unit, start))

    def close(self) -> int:
        return self.writer.close()
