"""Static streams through real DALI CPU pipelines over shards written by the real ShardWriter.

Images are solid colours that encode the sample (red = sample index, green = its class), and
crop, flip and resize keep a solid colour, so every decoded batch says which samples it holds.
"""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shards.writer import ShardWriter
from trainers.config import StreamConfig
from trainers.data.config import LoaderConfig
from trainers.data.source import build_batch_source
from trainers.errors import TrainError

LOADER = LoaderConfig(crop_size=16, resize_size=20, num_threads=1, shuffle_buffer=8)
CLASSES = 3


def solid_sample(index: int) -> dict:
    """A 24 px solid-colour sample: red = index, green = 60 * class + 30; PNG every 2nd, else JPEG."""
    label = index % CLASSES
    buffer = io.BytesIO()
    fmt, ext = ("PNG", "png") if index % 2 else ("JPEG", "jpg")
    Image.new("RGB", (24, 24), (index, 60 * label + 30, 200)).save(buffer, format=fmt, quality=100)
    return {"__key__": f"s{index:05d}", ext: buffer.getvalue(), "cls": label, "json": {"index": index}}


def write_solid(stream_dir: Path, indices: range, writer: ShardWriter | None = None, max_samples: int = 5) -> None:
    """Write solid samples through the real writer (an open one is flushed, not closed)."""
    if writer is not None:
        for index in indices:
            writer.write(solid_sample(index))
        writer.flush()
        return
    with ShardWriter(stream_dir, "s", "w0", "testhash", max_samples=max_samples) as fresh:
        for index in indices:
            fresh.write(solid_sample(index))


def decoded(batch, loader: LoaderConfig = LOADER) -> list[tuple[int, int]]:
    """(sample index, class) read back from each image's colour, checked against its label."""
    mean = torch.tensor(loader.mean).view(1, 3)
    std = torch.tensor(loader.std).view(1, 3)
    pixels = ((batch.images.mean(dim=(2, 3)) * std + mean) * 255).round().int()
    spread = (batch.images.amax(dim=(2, 3)) - batch.images.amin(dim=(2, 3))).max()
    assert spread < 0.05, "a solid-colour image came back not solid"
    found = [(int(red), round((int(green) - 30) / 60)) for red, green, _ in pixels.tolist()]
    assert [label for _, label in found] == batch.labels.tolist()
    return found


def source(stream_dir: Path, batch_size: int = 4, rank: int = 0, world_size: int = 1, seed: int = 0,
           loader: LoaderConfig = LOADER, **stream):
    return build_batch_source("s", stream_dir, StreamConfig(batch_size=batch_size, **stream), loader,
                              rank, world_size, "cpu", seed, growing=False)


def test_labels_and_images_read_back_as_written(tmp_path):
    write_solid(tmp_path, range(12))
    loader_source = source(tmp_path, batch_size=4)
    seen = []
    for _ in range(3):
        batch = loader_source.next_batch()
        assert batch.images.shape == (4, 3, 16, 16) and batch.images.dtype == torch.float32
        assert batch.labels.dtype == torch.int64
        seen += decoded(batch)
    # PNG (odd indices) keeps colours exactly, JPEG within a few levels.
    assert {index for index, _ in seen if index % 2} == set(range(1, 12, 2))
    assert len(seen) == 12
    assert loader_source.stats.samples == 12 and loader_source.stats.bad_samples == 0


def test_ranks_read_disjoint_parts_covering_the_stream(tmp_path):
    write_solid(tmp_path, range(1, 24, 2), max_samples=3)  # PNG only: colours exact
    parts = []
    for rank in range(2):
        part = source(tmp_path, batch_size=3, rank=rank, world_size=2)
        parts.append({index for _ in range(2) for index, _ in decoded(part.next_batch())})
    assert parts[0].isdisjoint(parts[1])
    assert parts[0] | parts[1] == set(range(1, 24, 2))


def test_epochs_cycle_and_are_counted(tmp_path):
    write_solid(tmp_path, range(1, 13, 2), max_samples=2)
    loader_source = source(tmp_path, batch_size=3)
    epochs = [{index for _ in range(2) for index, _ in decoded(loader_source.next_batch())} for _ in range(2)]
    assert epochs[0] == epochs[1] == set(range(1, 13, 2))
    assert loader_source.stats.extra["epoch"] == 2


def test_same_seed_same_batches_other_seed_differs(tmp_path):
    write_solid(tmp_path, range(16))

    def run(seed: int) -> list[torch.Tensor]:
        loader_source = source(tmp_path, seed=seed, augment="additional")
        return [loader_source.next_batch().images for _ in range(3)]

    first, again, other = run(1), run(1), run(2)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_state_dict_resumes_at_the_same_position(tmp_path):
    write_solid(tmp_path, range(20), max_samples=4)
    uninterrupted = source(tmp_path, batch_size=3, augment="additional")
    interrupted = source(tmp_path, batch_size=3, augment="additional")
    for _ in range(4):
        uninterrupted.next_batch(), interrupted.next_batch()
    state = interrupted.state_dict()
    interrupted.close()
    resumed = source(tmp_path, batch_size=3, augment="additional")
    resumed.load_state_dict(state)
    for _ in range(6):  # crosses an epoch boundary (20 samples)
        expected, got = uninterrupted.next_batch(), resumed.next_batch()
        assert torch.equal(expected.images, got.images) and torch.equal(expected.labels, got.labels)
    assert resumed.stats.samples == uninterrupted.stats.samples


def _write_with_corrupt_jpeg(stream_dir: Path, corrupt_index: int, count: int) -> None:
    with ShardWriter(stream_dir, "s", "w0", "testhash", max_samples=4) as writer:
        for index in range(count):
            sample = solid_sample(index)
            if index == corrupt_index:
                sample = {"__key__": sample["__key__"], "jpg": b"\xff\xd8\xff" + b"not a jpeg" * 8,
                          "cls": sample["cls"], "json": {}}
            writer.write(sample)


def test_corrupt_jpeg_is_skipped_counted_and_replaced(tmp_path):
    _write_with_corrupt_jpeg(tmp_path, corrupt_index=5, count=12)
    loader_source = source(tmp_path, batch_size=4)
    seen = [index for _ in range(3) for index, _ in decoded(loader_source.next_batch())]
    assert loader_source.stats.bad_samples == 1
    assert len(seen) == 12  # the batch with the bad image was refilled and reading went on
    assert 5 not in seen and {1, 3, 7, 9, 11} <= set(seen)


def test_corrupt_jpeg_fails_fast_when_configured(tmp_path):
    _write_with_corrupt_jpeg(tmp_path, corrupt_index=2, count=8)
    loader_source = source(tmp_path, batch_size=8, loader=LOADER.model_copy(update={"on_bad_sample": "fail"}))
    with pytest.raises(TrainError, match=r"undecodable image: .*s00002"):
        loader_source.next_batch()


def test_truncated_shard_is_left_out_and_counted(tmp_path):
    write_solid(tmp_path, range(1, 21, 2), max_samples=5)
    first = min(tmp_path.glob("*.tar"))
    first.write_bytes(first.read_bytes()[:1500])
    loader_source = source(tmp_path, batch_size=5)
    assert loader_source.stats.bad_samples == 5
    assert {index for index, _ in decoded(loader_source.next_batch())} == set(range(11, 21, 2))
    with pytest.raises(TrainError, match="damaged shards"):
        source(tmp_path, loader=LOADER.model_copy(update={"on_bad_sample": "fail"}))


def test_no_shards_is_one_train_error(tmp_path):
    with pytest.raises(TrainError, match="no readable committed shards"):
        source(tmp_path)


@pytest.mark.gpu
def test_mixed_decode_on_gpu_matches_labels(tmp_path):
    write_solid(tmp_path, range(1, 9, 2))
    loader_source = build_batch_source("s", tmp_path, StreamConfig(batch_size=4), LOADER, 0, 1, "cuda:0", 0, growing=False)
    batch = loader_source.next_batch()
    assert batch.images.is_cuda and batch.images.shape == (4, 3, 16, 16)
    assert set(decoded(type(batch)(batch.images.cpu(), batch.labels.cpu()))) <= {(i, i % CLASSES) for i in range(1, 9, 2)}


def test_eval_transform_resizes_and_centre_crops():
    from nvidia.dali import fn, pipeline_def

    from trainers.data.augment import eval_transform

    image = np.zeros((20, 40, 3), np.uint8)
    image[:, 10:30] = 255  # the centre 20 columns are white

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipeline():
        return eval_transform(fn.external_source(source=lambda: [image], layout="HWC"), LOADER)

    pipe = pipeline()
    pipe.build()
    (out,) = pipe.run()
    result = np.array(out[0])
    assert result.shape == (3, 16, 16)
    white = (1 - np.array(LOADER.mean)) / np.array(LOADER.std)
    assert np.allclose(result[:, 4:12, 4:12].mean(axis=(1, 2)), white, atol=0.05)
