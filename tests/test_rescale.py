"""Rescaling trainers (`genint scale JOB --trainers N`) continues the growing streams where the old
ranks left them, and a checkpoint of another source-state version is refused in one line."""

import sys
from collections import Counter
from pathlib import Path

import pytest
import ray
import torch

import tests.test_loader_static
from shards.writer import ShardWriter
from tests.checkpoint_helpers import copy_checkpoint, forge_record, latest_step_dir, tiny_training
from tests.test_loader_static import LOADER, decoded, solid_sample, write_solid
from trainers import checkpoint
from trainers.callbacks import History
from trainers.checkpoint_files import MODEL_STATES_NAME
from trainers.config import TrainConfig
from trainers.data.growing import GrowingReader
from trainers.errors import TrainError
from trainers.ray_train import train
from trainers.shard_sources import ShardSourceFactory

GROWING = "interventional"
BATCH = 4


def write_growing(stream_dir: Path, indices: range, writer_id: str) -> None:
    """Solid samples (red = index) in shards of 4, committed by the real writer. Odd indices only:
    those are PNGs, whose colours read back exact (JPEG turns red 30 into 29)."""
    assert all(index % 2 for index in indices)
    with ShardWriter(stream_dir, GROWING, writer_id, "testhash", max_samples=4) as writer:
        for index in indices:
            writer.write(solid_sample(index))


def taken_indices(reader: GrowingReader, count: int) -> list[int]:
    """Take ``count`` samples; their indices, from the keys (``s00017`` -> 17)."""
    return [int(sample.where.rsplit(":s", 1)[1]) for sample in reader.take(count)]


def test_rescaled_readers_read_each_committed_sample_once(tmp_path: Path):
    write_growing(tmp_path, range(1, 48, 2), "g0")
    one = GrowingReader(tmp_path, 0, 1, seed=5)
    one.poll()
    consumed = taken_indices(one, 7)
    saved = [one.state_dict()]

    write_growing(tmp_path, range(49, 80, 2), "g1")
    two = [GrowingReader(tmp_path, rank, 2, seed=5) for rank in range(2)]
    for reader in two:
        reader.load_rescaled_state_dicts(saved)
    # Only rank 0 polls: the new shards are in its state's manifest position, not in rank 1's.
    two[0].poll()
    assert two[0].backlog + two[1].backlog == 24 - 7 + 8
    consumed += taken_indices(two[0], 9) + taken_indices(two[1], 5)
    saved = [reader.state_dict() for reader in two]

    back = GrowingReader(tmp_path, 0, 1, seed=5)
    back.load_rescaled_state_dicts(saved)
    # Positions 7 and 9 came after rank 1's manifest position: unread, from rank 0's further one.
    assert back.backlog == 40 - len(consumed)
    consumed += taken_indices(back, back.backlog)
    assert sorted(consumed) == list(range(1, 80, 2))


class IndexLoggingFactory(ShardSourceFactory):
    """Each worker's growing source appends the indices of the samples it trained on to ``log_dir/<rank>.txt``."""

    def __init__(self, log_dir: Path, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.log_dir = log_dir

    def __call__(self, stream, config, rank, world_size, device):
        source = super().__call__(stream, config, rank, world_size, device)
        if stream != GROWING:
            return source
        next_batch, log = source.next_batch, self.log_dir / f"{rank}.txt"

        def logging_next_batch():
            batch = next_batch()
            with log.open("a") as file:
                file.write("".join(f"{index}\n" for index, _ in decoded(batch)))
            return batch

        source.next_batch = logging_next_batch
        return source


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # Workers cannot import test modules: ship the factory and the colour decoding by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.cloudpickle.register_pickle_by_value(tests.test_loader_static)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_rescale_1_2_1_trains_on_each_committed_sample_once(local_ray, tmp_path: Path):
    store, logs = tmp_path / "store", tmp_path / "logs"
    logs.mkdir()
    write_solid(store / "original", range(100, 120))
    write_growing(store / GROWING, range(1, 64, 2), "g0")
    config = TrainConfig.model_validate({
        "model": "small_cnn", "num_classes": 3, "checkpoint_every_steps": 100, "report_every_steps": 3,
        "max_failures": 0, "zero_stage": 1, "optimizer": {"lr": 0.01, "decay_unit": "steps"},
        "data": LOADER.model_copy(update={"poll_interval_s": 0.05}).model_dump(),
        "streams": {"original": {"batch_size": 2},
                    GROWING: {"batch_size": BATCH, "when_short": "wait", "wait_timeout_s": 10}},
    })
    factory = IndexLoggingFactory(logs, store, config.data, config.seed, growing=frozenset({GROWING}))
    run_dir = tmp_path / "run"

    def run(workers: int, until_step: int) -> list[tuple[int, int]]:
        """Train to ``until_step`` with ``workers`` workers, resuming; (step, rank) of every step trained."""
        history = History()
        train(config.model_copy(update={"max_steps": until_step}), factory, run_dir, [history], num_workers=workers)
        return [(report.step, report.rank) for report in history.steps]

    # 1 worker: 3 steps of 4 of the 32 committed samples; then 16 more commit.
    assert run(1, 3) == [(1, 0), (2, 0), (3, 0)]
    write_growing(store / GROWING, range(65, 96, 2), "g1")
    # 2 workers, 3 steps: 24 samples (each rank owns at least 12 unread ones whatever the first run read).
    assert run(2, 6) == [(step, rank) for step in (4, 5, 6) for rank in (0, 1)]
    # 1 worker, 3 steps: the last 12.
    assert run(1, 9) == [(7, 0), (8, 0), (9, 0)]

    consumed = Counter(index for path in logs.glob("*.txt") for index in map(int, path.read_text().split()))
    assert consumed == Counter(range(1, 96, 2))


def _drop_source_state_version(step_dir: Path) -> None:
    """Turn a genint checkpoint into one of the unversioned layout (and re-record its files)."""
    states = step_dir / MODEL_STATES_NAME
    content = torch.load(states, weights_only=True)
    del content["source_state_version"]
    torch.save(content, states)
    forge_record(step_dir)


def test_a_checkpoint_of_another_source_state_version_is_refused_in_one_line(tmp_path: Path):
    directory = copy_checkpoint(tmp_path / "checkpoints")
    step_dir = latest_step_dir(directory)
    _drop_source_state_version(step_dir)
    with tiny_training() as training, pytest.raises(TrainError) as error:
        checkpoint.restore(training.engine, directory, training.sources)
    message = str(error.value)
    assert message == (f"checkpoint {step_dir}: its data positions are source-state version 1, this genint reads "
                       f"version {checkpoint.SOURCE_STATE_VERSION}; resume it with the genint that wrote it, or move "
                       f"{directory} away to train from the start")


def test_a_checkpoint_of_this_version_restores(tmp_path: Path):
    directory = copy_checkpoint(tmp_path / "checkpoints")
    with tiny_training() as training:
        assert checkpoint.restore(training.engine, directory, training.sources) == 2
