"""The worker's training loop: build, restore, step, report, checkpoint."""

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch
import torch.distributed as dist

from trainers import checkpoint
from trainers.batches import BatchSource
from trainers.config import StreamConfig, TrainConfig
from trainers.engine import build_engine, memory_format, seed_everything
from trainers.objectives import build_objective
from trainers.step import train_step

# What a worker hands to the driver: {"steps": [StepReport dicts], "checkpoint": {"step", "path"} or None}.
Emit = Callable[[dict], None]


class SourceFactory(Protocol):
    """Builds one stream's source on a worker; called only for streams with batch_size > 0."""

    def __call__(self, stream: str, config: StreamConfig, rank: int, world_size: int, device: torch.device) -> BatchSource: ...


def run_worker(config: TrainConfig, make_source: SourceFactory, checkpoint_dir: Path, device: torch.device, emit: Emit) -> int:
    """Train on this worker until ``config.max_steps``, resuming from ``checkpoint_dir`` if it holds one.

    Args:
        config: the training config.
        make_source: builds each read stream's ``BatchSource`` for this rank.
        checkpoint_dir: where DeepSpeed checkpoints are written and resumed from (shared by ranks).
        device: this worker's device.
        emit: sends step reports and checkpoint notices to the driver (the same calls on every rank).
    Returns:
        the last step trained.
    """
    rank, world_size = dist.get_rank(), dist.get_world_size()
    engine = build_engine(config, device)
    sources = {name: make_source(name, stream, rank, world_size, device) for name, stream in config.active_streams.items()}
    try:
        # Per-rank RNG streams for anything random in the step; a restore replaces them.
        seed_everything(config.seed * 1000 + rank)
        start = checkpoint.restore(engine, checkpoint_dir, sources)
        return _loop(config, engine, sources, checkpoint_dir, start, device, emit)
    finally:
        for source in sources.values():
            source.close()


def _loop(config: TrainConfig, engine, sources: dict[str, BatchSource], checkpoint_dir: Path, start: int, device: torch.device, emit: Emit) -> int:
    objective = build_objective(config.objective)
    weights = {name: stream.loss_weight for name, stream in config.active_streams.items()}
    rank, layout = dist.get_rank(), memory_format(config, device)
    engine.train()
    pending = []
    for step in range(start + 1, config.max_steps + 1):
        pending.append(train_step(engine, objective, sources, weights, step, rank, layout).to_dict())
        saved = None
        if step % config.checkpoint_every_steps == 0 or step == config.max_steps:
            path = checkpoint.save(engine, checkpoint_dir, step, sources, config.keep_checkpoints)
            saved = {"step": step, "path": str(path)}
        # Every rank reports at the same steps: a report is a collective in Ray Train.
        if saved or step % config.report_every_steps == 0:
            emit({"steps": pending, "checkpoint": saved})
            pending = []
    return config.max_steps
