"""Build the DeepSpeed engine for one worker from the training config."""

import os
import random
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.distributed as dist

from trainers.config import TrainConfig
from trainers.deepspeed_config import deepspeed_config, step_schedule
from trainers.models import build_model
from trainers.site_heads import add_site_heads


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def memory_format(config: TrainConfig, device: torch.device) -> torch.memory_format:
    """The input batches' layout: channels_last on CUDA when configured (faster bf16 convolutions),
    contiguous otherwise. The weights stay contiguous (see ``build_engine``)."""
    return torch.channels_last if config.channels_last and device.type == "cuda" else torch.contiguous_format


def build_engine(config: TrainConfig, device: torch.device):
    """The classifier wrapped by ``deepspeed.initialize`` (the process group must exist).

    Args:
        config: model, optimiser, schedule and DeepSpeed settings.
        device: the worker's device; CUDA selects bf16.
    Returns:
        the DeepSpeed engine (its optimiser and LR scheduler are attached to it; its checkpoints
        load with ``weights_only=True``).
    """
    import deepspeed  # imported late: DS_ACCELERATOR must be set before deepspeed picks its accelerator

    # Same initial weights on every rank (DeepSpeed also broadcasts rank 0's at initialize).
    seed_everything(config.seed)
    model = build_model(config.model, config.num_classes, config.pretrained)
    add_site_heads(model, config.objective, config.data.crop_size)  # before initialize: the optimiser holds them too
    # Weights stay contiguous: DeepSpeed views each parameter as bytes to broadcast it and flattens
    # them into its optimiser's buffers, which fails on channels_last weights. cuDNN runs a
    # convolution channels_last when its input is, so the batch's layout is enough.
    model = model.to(device)
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        model_parameters=model.parameters(),
        config=deepspeed_config(config, use_cuda=device.type == "cuda"),
        lr_scheduler=step_schedule(config),
    )
    from trainers.deepspeed_checkpoints import load_checkpoints_as_data  # imports deepspeed, hence late too

    load_checkpoints_as_data(engine)
    return engine


@contextmanager
def local_process_group(backend: str = "gloo") -> Iterator[None]:
    """A one-process group, for running a worker's engine in this process (tests, benchmarks).

    Ray Train creates the group for real workers; DeepSpeed needs one either way. On a GPU pass
    ``nccl``, the backend Ray Train gives GPU workers.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # DeepSpeed reads the launcher's variables even when the group already exists.
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(backend, rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()
        # DeepSpeed caches a clone of the world group and would hand the destroyed one to the next
        # engine built in this process (``ValueError: Group ... is not registered``).
        groups = sys.modules.get("deepspeed.utils.groups")
        if groups is not None:
            groups._WORLD_GROUP = None
