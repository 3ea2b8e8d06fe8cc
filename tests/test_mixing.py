"""Stream mixing: batch composition, streams that are never read, skipped streams, Eq. 1 in a real step;
the worker loop's cooperative stop."""

import copy
import math
from pathlib import Path

import pytest
import torch

from trainers.batches import StreamBatch
from trainers.config import TrainConfig
from trainers.engine import build_engine, local_process_group
from trainers.loop import run_worker
from trainers.memory_source import MemorySource, MemorySourceFactory, colour_classes
from trainers.objectives import CrossEntropyMix
from trainers.step import mix_batches, train_step

SIZE, CLASSES = 16, 3


def tiny_config(**overrides) -> TrainConfig:
    base = {
        "model": "resnet18",
        "num_classes": CLASSES,
        "max_steps": 3,
        "checkpoint_every_steps": 100,
        "report_every_steps": 1,
        "optimizer": {"lr": 0.01, "decay_unit": "steps", "decay_every": 100},
        "streams": {"original": {"batch_size": 6}, "interventional": {"batch_size": 2, "loss_weight": 0.05}},
    }
    return TrainConfig.model_validate({**base, **overrides})


@pytest.fixture(scope="module")
def process_group():
    with local_process_group():
        yield


def batch(start: int, count: int) -> StreamBatch:
    images = torch.arange(start, start + count, dtype=torch.float32).view(count, 1, 1, 1).expand(count, 3, 2, 2)
    return StreamBatch(images.contiguous(), torch.arange(start, start + count))


def test_mixed_batch_holds_each_stream_in_config_order_with_exact_sizes():
    batches = {"original": batch(0, 5), "interventional": batch(100, 2), "transferred": batch(200, 3)}
    mixed = mix_batches(batches, {"original": 1.0, "interventional": 0.05, "transferred": 2.0})
    assert [(s.stream, s.weight, s.start, s.stop) for s in mixed.segments] == [
        ("original", 1.0, 0, 5), ("interventional", 0.05, 5, 7), ("transferred", 2.0, 7, 10)
    ]
    for segment in mixed.segments:
        expected = batches[segment.stream]
        assert torch.equal(mixed.images[segment.start : segment.stop], expected.images)
        assert torch.equal(mixed.labels[segment.start : segment.stop], expected.labels)
    assert mixed.images.shape == (10, 3, 2, 2)


def test_a_skipped_stream_drops_out_of_the_batch():
    mixed = mix_batches({"original": batch(0, 4), "interventional": None}, {"original": 1.0, "interventional": 0.5})
    assert [s.stream for s in mixed.segments] == ["original"] and len(mixed.labels) == 4
    assert mix_batches({"original": None}, {"original": 1.0}) is None


class SkippingSource(MemorySource):
    """Returns None (the skip policy) on every call."""

    def next_batch(self):
        return None


@pytest.mark.slow
def test_train_step_loss_is_eq1_by_hand_and_skips_drop_their_term(process_group):
    config = tiny_config()
    engine = build_engine(config, torch.device("cpu"))
    data = {name: colour_classes(16, CLASSES, SIZE, seed) for seed, name in enumerate(["original", "interventional"])}
    sources = {name: MemorySource(name, *data[name], config.streams[name].batch_size, seed=3) for name in data}
    expected_rows = {name: copy.deepcopy(source).next_batch() for name, source in sources.items()}
    before = copy.deepcopy(engine.module).train()
    weights = {"original": 1.0, "interventional": 0.05}

    report = train_step(engine, CrossEntropyMix(), sources, weights, step=1, rank=0)

    logits = before(torch.cat([expected_rows["original"].images, expected_rows["interventional"].images]))
    log_probs = torch.log_softmax(logits.double(), dim=1)
    labels = torch.cat([expected_rows["original"].labels, expected_rows["interventional"].labels])
    picked = -log_probs[torch.arange(8), labels]
    hand = {"original": picked[:6].mean().item(), "interventional": picked[6:].mean().item()}
    assert report.stream_losses == pytest.approx(hand, rel=1e-4)
    assert report.loss == pytest.approx(hand["original"] + 0.05 * hand["interventional"], rel=1e-4)
    assert report.samples == {"original": 6, "interventional": 2}
    assert report.stats["original"].samples == 6 and report.data_wait_s <= report.step_s
    assert not math.isclose(report.loss, hand["original"], rel_tol=1e-6)

    sources["interventional"] = SkippingSource("interventional", *data["interventional"], 2)
    skipped = train_step(engine, CrossEntropyMix(), sources, weights, step=2, rank=0)
    assert skipped.samples == {"original": 6} and set(skipped.stream_losses) == {"original"}
    assert skipped.loss == pytest.approx(skipped.stream_losses["original"], rel=1e-6)


class RecordingFactory(MemorySourceFactory):
    """Records which streams were built and the sample ids each one read."""

    def __init__(self, datasets):
        super().__init__(datasets)
        self.built: list[str] = []
        self.read: dict[str, list[int]] = {}

    def __call__(self, stream, config, rank, world_size, device):
        source = super().__call__(stream, config, rank, world_size, device)
        self.built.append(stream)
        read, next_batch = self.read.setdefault(stream, []), source.next_batch

        def recording_next_batch():
            result = next_batch()
            read.extend(source.last_ids.tolist())
            return result

        source.next_batch = recording_next_batch
        return source


@pytest.mark.slow
def test_a_stream_with_batch_size_zero_is_never_built_or_read(process_group, tmp_path: Path):
    streams = {"original": {"batch_size": 4}, "interventional": {"batch_size": 0}, "transferred": {"batch_size": 2}}
    config = tiny_config(streams=streams, checkpoint_every_steps=1, keep_checkpoints=2)
    datasets = {name: colour_classes(32, CLASSES, SIZE, seed) for seed, name in enumerate(streams)}
    factory = RecordingFactory(datasets)
    emitted = []
    run_worker(config, factory, tmp_path, torch.device("cpu"), lambda report: emitted.append(report.to_dict()))
    assert factory.built == ["original", "transferred"]
    assert "interventional" not in factory.read
    assert [len(factory.read[name]) for name in ("original", "transferred")] == [3 * 4, 3 * 2]
    steps = [step for payload in emitted for step in payload["steps"]]
    assert [step["samples"] for step in steps] == [{"original": 4, "transferred": 2}] * 3
    # A checkpoint per step, the oldest pruned, the newest marked latest.
    assert sorted(path.name for path in tmp_path.glob("step_*")) == ["step_000000002", "step_000000003"]
    assert (tmp_path / "latest").read_text() == "step_000000003"


@pytest.mark.slow
def test_irm_trains_through_deepspeed_with_each_stream_an_environment(process_group, tmp_path: Path):
    streams = {"red": {"batch_size": 4}, "green": {"batch_size": 4}}
    config = tiny_config(streams=streams, max_steps=2, objective={"name": "irm", "irm_weight": 10.0, "irm_anneal_steps": 1})
    datasets = {name: colour_classes(16, CLASSES, SIZE, seed) for seed, name in enumerate(streams)}
    emitted = []
    run_worker(config, MemorySourceFactory(datasets), tmp_path, torch.device("cpu"), lambda report: emitted.append(report.to_dict()))
    steps = [step for payload in emitted for step in payload["steps"]]
    assert [step["extra"]["irm_penalty_weight"] for step in steps] == [1.0, 10.0]
    for step in steps:
        erm = sum(step["stream_losses"].values())
        weight, penalty = step["extra"]["irm_penalty_weight"], step["extra"]["irm_penalty"]
        assert penalty > 0
        assert step["loss"] == pytest.approx((erm + weight * penalty) / max(weight, 1.0), rel=1e-5)


@pytest.mark.slow
def test_a_stopped_worker_checkpoints_where_it_stopped_and_the_next_run_resumes_there(process_group, tmp_path: Path):
    config = tiny_config(max_steps=5, report_every_steps=100, streams={"original": {"batch_size": 4}})
    factory = MemorySourceFactory({"original": colour_classes(32, CLASSES, SIZE, 0)})
    asked = []

    def stop_after_two_steps() -> bool:
        asked.append(1)
        return len(asked) >= 2

    emitted = []
    assert run_worker(config, factory, tmp_path, torch.device("cpu"), lambda report: emitted.append(report.to_dict()), stop_after_two_steps) == 2
    assert emitted[0] == {"steps": [], "checkpoint": None, "started": 0}
    assert [step["step"] for step in emitted[1]["steps"]] == [1, 2]  # reported early, with its checkpoint
    assert emitted[1]["checkpoint"]["step"] == 2 and (tmp_path / "latest").read_text() == "step_000000002"

    emitted = []
    assert run_worker(config, factory, tmp_path, torch.device("cpu"), lambda report: emitted.append(report.to_dict())) == 5
    assert emitted[0]["started"] == 2
    assert [step["step"] for payload in emitted for step in payload["steps"]] == [3, 4, 5]
