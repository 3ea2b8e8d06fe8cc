"""The bf16 DeepSpeed engine on a GPU (run through the device tool: ``pytest -m gpu``)."""

import math

import pytest
import torch

from trainers.config import TrainConfig
from trainers.engine import build_engine, local_process_group, memory_format
from trainers.memory_source import MemorySource, colour_classes
from trainers.objectives import CrossEntropyMix
from trainers.step import train_step


@pytest.mark.gpu
def test_bf16_engine_takes_a_channels_last_step_on_cuda():
    # channels_last weights once made deepspeed.initialize fail (it views each parameter as bytes).
    config = TrainConfig.model_validate({
        "model": "resnet18", "num_classes": 3, "optimizer": {"lr": 0.1, "decay_unit": "steps"},
        "streams": {"original": {"batch_size": 4}},
    })
    device = torch.device("cuda")
    with local_process_group("nccl"):
        engine = build_engine(config, device)
        before = engine.module.fc.weight.detach().clone()
        source = MemorySource("original", *colour_classes(8, 3, 32, seed=0), 4)
        layout = memory_format(config, device)
        report = train_step(engine, CrossEntropyMix(), {"original": source}, {"original": 1.0}, 1, 0, layout)
        assert layout == torch.channels_last and engine.module.fc.weight.dtype == torch.bfloat16
        assert math.isfinite(report.loss)
        assert not torch.equal(engine.module.fc.weight, before)
        engine.destroy()
