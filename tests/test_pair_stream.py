"""A stream with pairs: true read from shards: each batch holds the samples and their partners, augmented alike;
one GS step through DeepSpeed on it; the one-line errors for a paired stream whose shards hold no partners."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from shards.writer import ShardWriter
from tests.conftest import write_stream
from trainers.config import StreamConfig, TrainConfig
from trainers.data.config import LoaderConfig
from trainers.data.source import build_batch_source
from trainers.engine import build_engine, local_process_group
from trainers.errors import TrainError
from trainers.objectives import build_objective
from trainers.step import train_step

LOADER = LoaderConfig(crop_size=8, resize_size=8, crop_area=(0.3, 0.8), mean=(0, 0, 0), std=(1, 1, 1), num_threads=1,
                      shuffle_buffer=4, prefetch_queue_depth=1)
PAIRS = StreamConfig(batch_size=6, pairs=True)


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def write_pairs(stream_dir, count: int = 20) -> None:
    """Pairs whose partner is the sample's negative, of the next class."""
    rng = np.random.default_rng(0)
    with ShardWriter(stream_dir, "pairs", "w0", "testhash", max_samples=7) as writer:
        for index in range(count):
            pixels = (rng.random((16, 16, 3)) * 255).astype(np.uint8)
            writer.write({"__key__": f"p{index}", "png": png(pixels), "cls": index % 3, "json": {"index": index},
                          "cf.png": png(255 - pixels), "cf.cls": (index + 1) % 3})


def test_a_paired_stream_yields_its_samples_with_their_aligned_partners(tmp_path):
    write_pairs(tmp_path / "pairs")
    source = build_batch_source("pairs", tmp_path / "pairs", PAIRS, LOADER, 0, 1, "cpu", seed=0, growing=False)
    for _ in range(4):  # crosses an epoch
        batch = source.next_batch()
        assert batch.images.shape == batch.partner_images.shape == (6, 3, 8, 8)
        assert torch.equal(batch.partner_labels, (batch.labels + 1) % 3)
        assert (batch.images + batch.partner_images - 1).abs().max() * 255 <= 1.01  # one crop and flip per pair
    state = source.state_dict()
    following = [source.next_batch() for _ in range(2)]
    source.load_state_dict(state)
    for expected in following:  # a restored position gives the same pairs, augmented the same
        again = source.next_batch()
        assert torch.equal(again.images, expected.images) and torch.equal(again.partner_images, expected.partner_images)
        assert torch.equal(again.partner_labels, expected.partner_labels)
    source.close()


@pytest.fixture(scope="module")
def process_group():
    with local_process_group():
        yield


def test_a_gs_step_trains_on_a_paired_shard_stream_under_deepspeed(tmp_path, process_group):
    write_pairs(tmp_path / "pairs")
    config = TrainConfig.model_validate({"model": "small_cnn", "num_classes": 3, "max_steps": 2, "optimizer": {"name": "adamw", "lr": 0.01},
                                         "streams": {"pairs": PAIRS.model_dump()}, "data": LOADER.model_dump(),
                                         "objective": {"name": "gradient_supervision", "gs_lambda": 2.0}})
    engine = build_engine(config, torch.device("cpu"))
    source = build_batch_source("pairs", tmp_path / "pairs", config.streams["pairs"], config.data, 0, 1, "cpu", 0, False)
    report = train_step(engine, build_objective(config.objective), {"pairs": source}, {"pairs": 1.0}, step=1, rank=0)
    assert report.samples == {"pairs": 12} and 0.0 <= report.extra["gs_loss/pairs"] <= 2.0
    assert report.loss > report.stream_losses["pairs"]  # Eq. 1 plus lambda x L_GS
    source.close()


def test_a_paired_stream_without_partners_is_a_one_line_error(tmp_path):
    write_stream(tmp_path / "original", 8)
    with pytest.raises(TrainError, match=r"^stream original: pairs is true but its samples carry no counterfactual partner "
                                         r"\(cf.cls missing in original-w0-000000.idx\); generate it with datagen.strategy.pairs "
                                         r"or set pairs: false$"):
        build_batch_source("original", tmp_path / "original", PAIRS, LOADER, 0, 1, "cpu", seed=0, growing=False)
    with pytest.raises(TrainError, match="stream original: pairs are read from static streams only"):
        build_batch_source("original", tmp_path / "original", PAIRS, LOADER, 0, 1, "cpu", seed=0, growing=True)
