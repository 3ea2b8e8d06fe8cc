"""The DeepSpeed config and learning-rate schedule derived from the job's ``TrainConfig``."""

from collections.abc import Callable

import torch

from trainers.config import TrainConfig
from trainers.errors import TrainError


def merge(base: dict, extra: dict) -> dict:
    """``base`` with ``extra`` merged in recursively (``extra`` wins on conflicts)."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _optimizer(config: TrainConfig, use_cuda: bool) -> dict:
    opt = config.optimizer
    if opt.name == "sgd":
        return {"type": "SGD", "params": {"lr": opt.lr, "momentum": opt.momentum, "weight_decay": opt.weight_decay}}
    # torch_adam: DeepSpeed's fused Adam kernels need CUDA; on CPU use torch's AdamW.
    params = {"lr": opt.lr, "weight_decay": opt.weight_decay, "torch_adam": not use_cuda}
    return {"type": "AdamW", "params": params}


def deepspeed_config(config: TrainConfig, use_cuda: bool) -> dict:
    """The DeepSpeed config for one worker.

    Args:
        config: the training config; ``config.deepspeed`` is merged last.
        use_cuda: bf16 on CUDA, fp32 on CPU.
    Returns:
        the dict for ``deepspeed.initialize(config=...)``.
    """
    derived = {
        # One mixed step per optimiser step: the micro batch is every stream's batch together.
        "train_micro_batch_size_per_gpu": config.micro_batch_size,
        "gradient_accumulation_steps": 1,
        "optimizer": _optimizer(config, use_cuda),
        "gradient_clipping": config.gradient_clipping,
        "zero_optimization": {"stage": config.zero_stage},
        # ZeRO only whitelists Adam-family optimisers; SGD's state is plain momentum, safe to shard.
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": use_cuda},
        "steps_per_print": 10**9,
    }
    opt = config.optimizer
    if opt.name == "adamw" and opt.warmup_steps > 0:
        derived["scheduler"] = {
            "type": "WarmupLR",
            "params": {"warmup_min_lr": 0.0, "warmup_max_lr": opt.lr, "warmup_num_steps": opt.warmup_steps, "warmup_type": "linear"},
        }
    return merge(derived, config.deepspeed)


def step_schedule(config: TrainConfig) -> Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler] | None:
    """The paper's schedule for SGD (lr x decay_factor every decay_every epochs or steps), or None.

    DeepSpeed has no step-decay scheduler, so it is torch's ``StepLR``, handed to
    ``deepspeed.initialize(lr_scheduler=...)``; the engine steps and checkpoints it.
    """
    opt = config.optimizer
    if opt.name != "sgd" or "scheduler" in config.deepspeed:
        return None
    if opt.decay_unit == "epochs" and config.steps_per_epoch is None:
        raise TrainError(
            "train.steps_per_epoch is required when train.optimizer.decay_unit is epochs "
            "(set it, or set train.optimizer.decay_unit: steps)"
        )
    step_size = opt.decay_every * (config.steps_per_epoch if opt.decay_unit == "epochs" else 1)
    return lambda optimizer: torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=opt.decay_factor)
