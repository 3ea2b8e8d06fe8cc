"""Checkpoints through DeepSpeed's ``save_checkpoint`` / ``load_checkpoint``.

DeepSpeed stores the model, optimiser and LR schedule; its ``client_state`` holds the step and,
for every rank, the sources' positions and the RNG states, so a resumed run continues the same
sample sequence. Only rank 0 writes ``client_state``, so the ranks' states are gathered to it
first. Every rank must call ``save`` and ``restore`` (they are collective).
"""

import logging
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from trainers.batches import BatchSource

logger = logging.getLogger(__name__)

TAG_PREFIX = "step_"


def rng_state() -> dict:
    """The state of every RNG the step may touch (python, numpy, torch CPU and CUDA)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tags(directory: Path) -> list[Path]:
    return sorted(path for path in directory.glob(f"{TAG_PREFIX}*") if path.is_dir())


def save(engine, directory: Path, step: int, sources: dict[str, BatchSource], keep: int) -> Path:
    """Save a checkpoint of ``step`` on every rank; keep the newest ``keep``. Returns its path."""
    local = {"sources": {name: source.state_dict() for name, source in sources.items()}, "rng": rng_state()}
    ranks: list[dict] = [{} for _ in range(dist.get_world_size())]
    dist.all_gather_object(ranks, local)
    tag = f"{TAG_PREFIX}{step:09d}"
    engine.save_checkpoint(str(directory), tag=tag, client_state={"step": step, "ranks": ranks})
    # save_checkpoint returns once this rank wrote its part; wait for all before pruning.
    dist.barrier()
    if dist.get_rank() == 0:
        for old in _tags(directory)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return directory / tag


def _zero_partitions(directory: Path) -> int:
    """ZeRO optimizer partitions in the newest checkpoint: one per data-parallel rank (0 without ZeRO)."""
    tag = (directory / "latest").read_text().strip()
    return len(list((directory / tag).glob("*zero_pp_rank_*_optim_states.pt")))


def restore(engine, directory: Path, sources: dict[str, BatchSource]) -> int:
    """Load the newest checkpoint in ``directory`` if there is one. Returns its step (0: none).

    With another worker count than the checkpoint's, the weights, step and LR schedule resume;
    ZeRO's optimizer state does not (DeepSpeed cannot repartition it), nor do the data positions.
    """
    if not (directory / "latest").is_file():
        return 0
    partitions = _zero_partitions(directory)
    # Without the optimizer state DeepSpeed refills ZeRO's fp32 partitions from the loaded weights.
    keep_optimizer = partitions in (0, dist.get_world_size())
    path, client_state = engine.load_checkpoint(str(directory), load_optimizer_states=keep_optimizer)
    if path is None:
        return 0
    ranks = client_state["ranks"]
    rank = dist.get_rank()
    if len(ranks) == dist.get_world_size():
        local = ranks[rank]
        for name, source in sources.items():
            if name in local["sources"]:
                source.load_state_dict(local["sources"][name])
        set_rng_state(local["rng"])
    elif rank == 0:
        # Data positions belong to a sharding by world size; with another size the loaders
        # start their streams afresh (model, LR schedule and step still resume).
        logger.warning("checkpoint %s was written by %d workers, now %d: loaders restart%s", path, len(ranks),
                       dist.get_world_size(), "" if keep_optimizer else ", ZeRO optimizer state restarts")
    return client_state["step"]
