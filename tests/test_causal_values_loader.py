"""Causal variables from shards: pointer-value grids written by the benchmark's writer (the real ShardWriter,
the digits in each sample's json) come back through the DALI static reader with every image beside its own
four digits; a stream without them, a growing stream asked for them and a class count the causal model does
not have are one-line errors."""

import pytest
import torch
from pydantic import ValidationError

from experiments.digits_pvr.data import stream_grids, write_grids, write_streams
from shards.writer import ShardWriter
from tests.test_loader_static import solid_sample
from trainers.config import StreamConfig, TrainConfig
from trainers.data.config import LoaderConfig
from trainers.data.source import build_batch_source
from trainers.errors import TrainError

# Mean 0, std 1: the decoded images are the written pixels in [0, 1].
LOADER = LoaderConfig(crop_size=32, resize_size=32, num_threads=1, shuffle_buffer=16, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
VARIABLES = ("top_left", "top_right", "bottom_left", "bottom_right")


def grid_source(stream_dir, variables=VARIABLES, growing=False):
    return build_batch_source("original", stream_dir, StreamConfig(batch_size=8, augment="none"), LOADER, 0, 1, "cpu", 0, growing,
                              variables)


def test_each_decoded_grid_comes_with_its_own_digits(tmp_path):
    grids = stream_grids("original", 40, seed=3)
    write_grids(tmp_path / "original", "original", grids, "hash")
    source = grid_source(tmp_path / "original")
    seen = 0
    for _ in range(6):  # past the first epoch's end
        batch = source.next_batch()
        assert batch.values.shape == (8, 4) and batch.values.dtype == torch.int64
        # the written grid each decoded image is (PNG is lossless, resize 32 -> 32 is the identity)
        nearest = torch.cdist(batch.images.flatten(1), grids.images.flatten(1)).argmin(1)
        assert torch.allclose(batch.images, grids.images[nearest], atol=1 / 255)
        assert torch.equal(batch.values, grids.digits[nearest])
        assert torch.equal(batch.labels, grids.labels[nearest])
        seen += len(nearest.unique())
    assert seen > 8
    source.close()


def test_the_augmented_stream_is_labelled_by_the_causal_model(tmp_path):
    write_streams(tmp_path, {"augmented": 24}, seed=3)
    write_streams(tmp_path, {"augmented": 24}, seed=3)  # the same settings: reused
    batch = grid_source(tmp_path / "augmented").next_batch()
    pointed = 1 + (batch.values[:, 0] >= 4).long() + (batch.values[:, 0] >= 7).long()
    assert torch.equal(batch.labels, batch.values.gather(1, pointed[:, None]).squeeze(1))


def test_missing_causal_variables_and_mismatched_classes_are_one_line_errors(tmp_path):
    with ShardWriter(tmp_path / "plain", "plain", "w0", "hash") as writer:
        for index in range(8):
            writer.write(solid_sample(index))
    with pytest.raises(TrainError, match=r"stream original: sample .* has no causal_variables object") as error:
        grid_source(tmp_path / "plain").next_batch()
    assert "\n" not in str(error.value)
    with pytest.raises(TrainError, match="read from static streams only"):
        grid_source(tmp_path / "plain", growing=True)
    with pytest.raises(ValidationError, match="num_classes must be 10, the outputs of causal model pointer_value"):
        TrainConfig.model_validate({"num_classes": 5, "objective": {"name": "interchange_intervention"}})
    assert TrainConfig.model_validate({"num_classes": 10, "objective": {"name": "interchange_intervention"}}).causal_variables == VARIABLES
    assert TrainConfig.model_validate({"num_classes": 5}).causal_variables == ()
