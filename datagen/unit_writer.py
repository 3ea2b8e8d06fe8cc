"""An actor's shard writer for work units: resumable per unit, counting its commits for progress."""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from shards.config import StoreRef
from shards.stores import open_unit_tracker
from shards.writer import ShardWriter


@dataclass(frozen=True)
class UnitReport:
    """What one ``run_unit`` call did."""

    unit_id: str
    writer_id: str
    images: int
    shards_committed: int
    seconds: float


class UnitWriter:
    """One actor's shard writer: opened on demand, writing whole work units, counting its commits.

    A unit resumes after the samples the manifest already holds for it, whichever writer
    committed them, so a unit is never duplicated however often it is retried. The manifest is
    followed, not re-read: each unit parses only the lines committed since the previous one.
    """

    def __init__(self, store: StoreRef, stream: str, writer_id: str):
        self.stream_dir = store.stream_dir(stream)
        self.writer_id = writer_id
        self._writer_args = (self.stream_dir, stream, writer_id, store.config_hash)
        self._limits = dict(max_samples=store.max_samples_per_shard, max_bytes=store.max_bytes_per_shard)
        self._writer: ShardWriter | None = None
        self._committed = self._reported = 0
        self._progress = open_unit_tracker(self.stream_dir)

    def _count_commit(self, record) -> None:
        # Runs on the writer's committer thread; an int increment is atomic enough for a counter.
        if record.kind == "shard":
            self._committed += 1

    def write_unit(self, unit_id: str, make_samples: Callable[[int], Iterator[dict]]) -> UnitReport:
        """Write ``make_samples(first uncommitted index)`` as unit ``unit_id`` unless it is done."""
        started, images = time.perf_counter(), 0
        if self._writer is None:  # again after close, so the pool can hand out more units
            self._writer = ShardWriter(*self._writer_args, **self._limits, on_commit=self._count_commit)
        progress = self._progress.refresh().get(unit_id)
        if progress is None or not progress.done:
            for sample in make_samples(progress.samples if progress else 0):
                self._writer.write(sample, unit=unit_id)
                images += 1
            self._writer.end_unit(unit_id)
        return UnitReport(unit_id, self.writer_id, images, self._newly_committed(), time.perf_counter() - started)

    def _newly_committed(self) -> int:
        """Shards committed since the last report (commits land on the writer's thread, later)."""
        committed = self._committed
        newly, self._reported = committed - self._reported, committed
        return newly

    def close(self) -> int:
        """Commit everything open; return the shards committed since the last report."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return self._newly_committed()
