"""Ray Train workers with DeepSpeed on CPU: the driver-side entry point end to end."""

import sys
from pathlib import Path

import pytest
import ray
import torch
from conftest import write_stream

from trainers.callbacks import History
from trainers.config import TrainConfig
from trainers.errors import TrainError
from trainers.memory_source import MemorySource, MemorySourceFactory, colour_classes
from trainers.models import load_classifier
from trainers.ray_train import train
from trainers.shard_sources import ShardSourceFactory

CLASSES, SIZE = 3, 16


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False)
    # Workers cannot import test modules: ship this module's factories by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


class IdLoggingFactory(MemorySourceFactory):
    """Each worker's sources append the ids of the samples they read to ``log_dir/<stream>-<rank>.txt``."""

    def __init__(self, datasets, log_dir: Path) -> None:
        super().__init__(datasets)
        self.log_dir = log_dir

    def __call__(self, stream, config, rank, world_size, device) -> MemorySource:
        source = super().__call__(stream, config, rank, world_size, device)
        log, next_batch = self.log_dir / f"{stream}-{rank}.txt", source.next_batch

        def logging_next_batch():
            batch = next_batch()
            with log.open("a") as file:
                file.write("".join(f"{index}\n" for index in source.last_ids.tolist()))
            return batch

        source.next_batch = logging_next_batch
        return source


def read_ids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()]


@pytest.mark.slow
def test_two_workers_learn_a_tiny_task_on_disjoint_data(local_ray, tmp_path: Path):
    config = TrainConfig.model_validate({
        "model": "resnet18",
        "num_classes": CLASSES,
        "max_steps": 16,
        "checkpoint_every_steps": 8,
        "report_every_steps": 4,
        "zero_stage": 1,
        "max_failures": 0,
        "optimizer": {"lr": 0.004, "decay_unit": "steps", "decay_every": 100},
        "streams": {"original": {"batch_size": 12}, "interventional": {"batch_size": 4, "loss_weight": 0.5}},
    })
    datasets = {"original": colour_classes(192, CLASSES, SIZE, 0), "interventional": colour_classes(64, CLASSES, SIZE, 1)}
    history = History()
    result = train(config, IdLoggingFactory(datasets, tmp_path), tmp_path / "run", [history], num_workers=2)

    assert result.steps == 16 and set(result.final_losses) == {0, 1}
    assert [report.step for report in history.steps] == [step for step in range(1, 17) for _ in range(2)]
    assert [c.step for c in history.checkpoints] == [8, 16] and result.checkpoint == history.checkpoints[-1].path
    for stream, batch_size in (("original", 12), ("interventional", 4)):
        rank0, rank1 = read_ids(tmp_path / f"{stream}-0.txt"), read_ids(tmp_path / f"{stream}-1.txt")
        assert len(rank0) == len(rank1) == 16 * batch_size
        assert not set(rank0) & set(rank1)
    # The trained weights load for evaluation and classify the task.
    model = load_classifier(result.checkpoint.parent, "resnet18", CLASSES)
    images, labels = colour_classes(96, CLASSES, SIZE, 0)
    with torch.no_grad():
        logits = model(images)
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    assert accuracy > 0.6
    # Learning, measured where it is not noise: the trained model's loss over 96 samples against the
    # first four steps' (both ranks). A rank's late step losses, over 16 samples each, swing from
    # 0.004 to 1.7 in this run; their mean against half the first steps' (this test's old bound)
    # failed for 2 of 6 seeds and once on another machine, while this ratio stayed below 0.24.
    first_steps_loss = sum(loss for rank in (0, 1) for loss in history.losses(rank)[:4]) / 8
    assert torch.nn.functional.cross_entropy(logits, labels).item() < 0.5 * first_steps_loss, history.losses(1)


def test_bad_config_fails_in_the_driver_with_one_line(tmp_path: Path):
    config = TrainConfig.model_validate({"model": "resnet18", "streams": {"original": {"batch_size": 2}}})
    with pytest.raises(TrainError, match="steps_per_epoch is required") as error:
        train(config, MemorySourceFactory({}), tmp_path)
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_a_worker_train_error_reaches_the_caller_as_one_line(local_ray, tmp_path: Path):
    config = TrainConfig.model_validate({
        "model": "resnet18", "num_classes": CLASSES, "max_steps": 2, "max_failures": 0,
        "optimizer": {"decay_unit": "steps"}, "streams": {"original": {"batch_size": 8}},
    })
    # 4 samples cannot make a batch of 8: the worker's source raises TrainError.
    factory = MemorySourceFactory({"original": colour_classes(4, CLASSES, SIZE, 0)})
    with pytest.raises(TrainError, match="rank 0 holds 4 samples, fewer than batch_size 8") as error:
        train(config, factory, tmp_path)
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_training_over_real_shards_with_the_dali_loader(local_ray, tmp_path: Path):
    store = tmp_path / "store"
    write_stream(store / "original", 40, max_samples=7, stream="original")
    write_stream(store / "interventional", 20, max_samples=5, writer_id="g0", stream="interventional")
    config = TrainConfig.model_validate({
        "model": "resnet18", "num_classes": 3, "max_steps": 4, "checkpoint_every_steps": 2, "report_every_steps": 2,
        "max_failures": 0, "optimizer": {"lr": 0.004, "decay_unit": "steps"},
        "data": {"crop_size": 16, "resize_size": 16, "num_threads": 1, "shuffle_buffer": 8},
        "streams": {"original": {"batch_size": 6}, "interventional": {"batch_size": 3, "loss_weight": 0.05},
                    "transferred": {"batch_size": 0}},
    })
    factory = ShardSourceFactory(store, config.data, config.seed, growing=frozenset({"interventional"}))
    history = History()
    result = train(config, factory, tmp_path / "run", [history])

    assert [r.samples for r in history.steps] == [{"original": 6, "interventional": 3}] * 4
    assert history.steps[-1].stats["original"].samples == 24 and history.steps[-1].stats["interventional"].samples == 12
    assert all(0 < r.loss < 10 for r in history.steps)
    assert result.checkpoint.name == "step_000000004"
    assert load_classifier(result.checkpoint.parent, "resnet18", 3)(torch.randn(2, 3, 16, 16)).shape == (2, 3)
