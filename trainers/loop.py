"""The worker's training loop: build, restore, step, report, checkpoint; stop early when asked."""

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch
import torch.distributed as dist

from shards.locations import S3Url

from trainers import checkpoint
from trainers.batches import BatchSource
from trainers.callbacks import CheckpointReport, WorkerReport
from trainers.config import StreamConfig, TrainConfig
from trainers.engine import build_engine, memory_format, seed_everything
from trainers.objectives import build_objective
from trainers.step import read_back, train_step

# Sends one of this rank's reports to the driver (a collective in Ray Train: every rank, same steps).
Emit = Callable[[WorkerReport], None]
# Asked on rank 0 after every step; True ends the run early with a checkpoint (e.g. to rescale it).
ShouldStop = Callable[[], bool]


class SourceFactory(Protocol):
    """Builds one stream's source on a worker; called only for streams with batch_size > 0."""

    def __call__(self, stream: str, config: StreamConfig, rank: int, world_size: int, device: torch.device) -> BatchSource: ...


def run_worker(config: TrainConfig, make_source: SourceFactory, checkpoint_dir: Path, device: torch.device, emit: Emit,
               should_stop: ShouldStop | None = None, checkpoint_mirror: S3Url | None = None) -> int:
    """Train on this worker until ``config.max_steps``, resuming from ``checkpoint_dir`` if it holds one.

    Args:
        config: the training config.
        make_source: builds each read stream's ``BatchSource`` for this rank.
        checkpoint_dir: where DeepSpeed checkpoints are written and resumed from (shared by ranks).
        device: this worker's device.
        emit: sends step reports and checkpoint notices to the driver (the same calls on every rank).
        should_stop: asked on rank 0 after every step; when it says True every rank saves a
            checkpoint and returns (a later run resumes there). None: run to ``max_steps``.
        checkpoint_mirror: an ``s3://`` prefix every checkpoint is copied to and resumed from
            (``trainers.checkpoint_mirror``); None: the local directory only.
    Returns:
        the last step trained.
    """
    rank, world_size = dist.get_rank(), dist.get_world_size()
    engine = build_engine(config, device)
    sources = {name: make_source(name, stream, rank, world_size, device) for name, stream in config.active_streams.items()}
    try:
        # Per-rank RNG streams for anything random in the step; a restore replaces them.
        seed_everything(config.seed * 1000 + rank)
        start = checkpoint.restore(engine, checkpoint_dir, sources, checkpoint_mirror)
        emit(WorkerReport(steps=[], started=start))
        return _loop(config, engine, sources, checkpoint_dir, start, device, emit, should_stop, checkpoint_mirror)
    finally:
        for source in sources.values():
            source.close()


def _stop_agreed(should_stop: ShouldStop | None, device: torch.device) -> bool:
    """Rank 0's answer, shared with every rank (saving a checkpoint is collective, so all must agree)."""
    if should_stop is None:
        return False
    flag = torch.tensor([float(dist.get_rank() == 0 and should_stop())], device=device)
    dist.broadcast(flag, src=0)
    # A host-device sync (on CUDA it waits for the step): every rank must know the answer before
    # the next step. Only where something can ask to stop (the controller's rescale and stop).
    return bool(flag.item())


def _loop(config: TrainConfig, engine, sources: dict[str, BatchSource], checkpoint_dir: Path, start: int, device: torch.device,
          emit: Emit, should_stop: ShouldStop | None, mirror: S3Url | None) -> int:
    objective = build_objective(config.objective)
    weights = {name: stream.loss_weight for name, stream in config.active_streams.items()}
    rank, layout = dist.get_rank(), memory_format(config, device)
    engine.train()
    pending = []
    for step in range(start + 1, config.max_steps + 1):
        pending.append(train_step(engine, objective, sources, weights, step, rank, layout, sync=False))
        stopping = _stop_agreed(should_stop, device)
        saved = None
        if stopping or step % config.checkpoint_every_steps == 0 or step == config.max_steps:
            # A sync point: saving waits for the device and gathers every rank's state.
            path = checkpoint.save(engine, checkpoint_dir, step, sources, config.keep_checkpoints, mirror)
            saved = CheckpointReport(step, path)
        # Every rank reports at the same steps: a report is a collective in Ray Train.
        if saved or step % config.report_every_steps == 0:
            read_back(pending)  # the steps' losses, all at once: the loop's one sync per report
            emit(WorkerReport(pending, saved))
            pending = []
        if stopping:
            return step
    return config.max_steps
