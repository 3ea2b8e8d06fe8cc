"""Training the CVAE on coloured digits, and reading its training data from a shard stream."""

import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import make_sample, write_stream
from PIL import Image

from cluster.config import load_config
from cluster.generation import train_generator
from cluster.run import prepare_generator
from datagen.directions import load_directions
from datagen.errors import DatagenError
from datagen.generators.cvae import load_cvae
from datagen.generators.cvae_config import CvaeArchitecture, CvaeTrainConfig
from datagen.generators.cvae_training import load_stream_images, train_cvae
from experiments.colored_digits.painter import BACKGROUND_COLOURS, coloured_digits
from shards.writer import ShardWriter

IMAGE_SIZE = 16
# Small enough to train in a few seconds on 2 shared cores; lr 1e-2 gets the latent to stop
# encoding class identity within 10 epochs (see the note in docs/benchmarks.md).
QUICK = CvaeTrainConfig(
    model=CvaeArchitecture(image_size=IMAGE_SIZE, hidden_dim=128), epochs=10, batch_size=32, learning_rate=1e-2
)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Train on one thread: with the 2 cores shared by other jobs, OpenMP's second thread spins
    waiting for a busy core and made these tiny matmuls ~20x slower (128 s instead of 6 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(one_torch_thread):
    images, labels = coloured_digits(IMAGE_SIZE)
    progress = []
    generator, history = train_cvae(images, labels, QUICK, on_progress=lambda epoch, loss: progress.append((epoch, loss)))
    return generator, history, progress, images, labels


def test_coloured_digits_have_the_background_of_their_class():
    images, labels = coloured_digits(IMAGE_SIZE, count=20)
    assert images.shape == (20, 3, IMAGE_SIZE, IMAGE_SIZE) and labels.tolist() == list(range(10)) * 2
    torch.testing.assert_close(images[:, :, 0, 0], BACKGROUND_COLOURS[labels % 5])  # sklearn's corners are blank
    assert (images.amax(dim=(2, 3)) > 0.5).all()  # white strokes light up the channels the background leaves dark


def test_training_loss_falls_and_reports_progress(trained):
    _, history, progress, _, _ = trained
    assert [entry.epoch for entry in history] == list(range(QUICK.epochs))
    assert progress == [(entry.epoch, entry.loss) for entry in history]
    assert history[-1].loss < 0.75 * history[0].loss
    assert history[-1].reconstruction < history[0].reconstruction
    for entry in history:
        assert entry.loss == pytest.approx(entry.reconstruction + QUICK.beta * entry.kl, rel=1e-5)


def test_generated_images_look_like_their_class(trained):
    generator, _, _, images, labels = trained
    class_means = torch.stack([images[labels == label].mean(0) for label in range(10)])
    latents = generator.sample_latents(range(40), truncation=1.0)
    classes_recognised = 0
    for label in range(10):
        generated = generator.generate(latents, torch.full((40,), label), truncation=1.0)
        distances = torch.cdist(generated.flatten(1), class_means.flatten(1))
        classes_recognised += (distances.argmin(1) == label).float().mean().item() > 0.5
    assert classes_recognised >= 8


def test_training_is_deterministic_and_leaves_the_global_rng_alone():
    images, labels = coloured_digits(IMAGE_SIZE, count=200)
    config = QUICK.model_copy(update={"epochs": 2})
    rng_before = torch.random.get_rng_state()
    first, first_history = train_cvae(images, labels, config)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    second, second_history = train_cvae(images, labels, config)
    assert first.generator_id == second.generator_id and first_history == second_history
    other, _ = train_cvae(images, labels, config.model_copy(update={"seed": 1}))
    assert other.generator_id != first.generator_id


@pytest.mark.parametrize(
    ("images", "labels", "expected"),
    [
        (torch.rand(4, 3, 8, 8), torch.zeros(4, dtype=torch.long), "(N>0, 3, 16, 16)"),
        (torch.rand(4, 3, 16, 16) * 255, torch.zeros(4, dtype=torch.long), "divide uint8 pixels by 255"),
        (torch.rand(4, 3, 16, 16), torch.zeros(3, dtype=torch.long), "shape (4,)"),
        (torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 10]), "[0, 10)"),
    ],
)
def test_bad_training_data_fails_with_one_line(images, labels, expected):
    with pytest.raises(DatagenError) as caught:
        train_cvae(images, labels, QUICK)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_load_stream_images_decodes_every_committed_sample(stream_dir: Path):
    written = write_stream(stream_dir, 10, max_samples=4)
    images, labels = load_stream_images(stream_dir, image_size=8)
    assert images.shape == (10, 3, 8, 8) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    assert labels.tolist() == [sample["cls"] for sample in written]
    sample = make_sample(3)  # a PNG: lossless, so the pixels are known exactly
    expected = Image.open(io.BytesIO(sample["png"])).convert("RGB").resize((8, 8), Image.Resampling.BILINEAR)
    torch.testing.assert_close(images[3], torch.from_numpy(np.array(expected)).permute(2, 0, 1).float() / 255)

    tiny = CvaeTrainConfig(model=CvaeArchitecture(num_classes=3, image_size=8, hidden_dim=8), epochs=1)
    generator, _ = train_cvae(images, labels, tiny)
    assert generator.generate(generator.sample_latents([0], 1.0), torch.tensor([2]), 1.0).shape == (1, 3, 8, 8)


def test_load_stream_images_fails_one_line_without_data(tmp_path: Path):
    for directory, expected in [(tmp_path / "missing", "not found"), (tmp_path, "no committed samples")]:
        with pytest.raises(DatagenError) as caught:
            load_stream_images(directory, image_size=8)
        assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_load_stream_images_fails_one_line_on_a_corrupt_shard(stream_dir: Path):
    write_stream(stream_dir, 10, max_samples=4)
    shard = sorted(stream_dir.glob("*.tar"))[1]
    shard.write_bytes(bytes(range(256)) * 12)  # not a tar header
    with pytest.raises(DatagenError) as caught:
        load_stream_images(stream_dir, image_size=8)
    assert "cannot read the training stream" in str(caught.value) and "\n" not in str(caught.value)


def test_classes_beyond_the_architecture_train_once_the_advice_is_applied(tmp_path: Path):
    """The advice names the job's config path: applied as ``--set``, `genint generator train`'s stage trains."""
    write_stream(tmp_path / "out" / "shards" / "original", 6)  # classes 0, 1, 2
    job = tmp_path / "job.yaml"
    architecture = {"num_classes": 2, "image_size": 8, "hidden_dim": 8}
    job.write_text(yaml.safe_dump({"name": "cvae", "output_dir": str(tmp_path / "out"), "datagen": {
        "generator": {"kind": "cvae", "train": {"model": architecture, "epochs": 1}}}}))
    with pytest.raises(DatagenError, match=r"labels must lie in \[0, 2\)") as caught:
        train_generator(load_config(job))
    advised = re.search(r"raise ([A-Za-z0-9_.]+)", str(caught.value))[1]
    assert advised == "datagen.generator.train.model.num_classes"
    destination = train_generator(load_config(job, [f"{advised}=3"]))
    assert load_cvae(destination).num_classes == 3


def test_a_job_trains_its_generator_again_when_its_settings_or_shards_change(tmp_path: Path):
    """`prepare_generator` reuses a generator genint trained only while its training fingerprint
    (settings and the training stream's shards) is the job's; directions at their default path follow it."""
    stream = tmp_path / "out" / "shards" / "original"
    write_stream(stream, 6)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"name": "cvae", "output_dir": str(tmp_path / "out"), "datagen": {
        "generator": {"kind": "cvae", "train": {"model": {"num_classes": 3, "image_size": 8, "hidden_dim": 8}, "epochs": 1}},
        "directions": {"samples": 200, "components": 2, "batch_size": 100, "regression_samples": 100}}}))
    generator_dir, directions = tmp_path / "out" / "generator", tmp_path / "out" / "directions.npz"

    def ids(overrides: list[str]) -> tuple[str, str]:
        prepare_generator(load_config(job, overrides))
        return load_cvae(generator_dir).generator_id, load_directions(directions).generator_id

    first, first_directions = ids([])
    assert first_directions == first
    assert ids([]) == (first, first)  # unchanged settings and shards: reused
    second, second_directions = ids(["datagen.generator.train.epochs=2"])
    assert second != first and second_directions == second
    with ShardWriter(stream, "original", "w1", "testhash", max_samples=7) as writer:
        writer.write(make_sample(100))
    third, third_directions = ids(["datagen.generator.train.epochs=2"])
    assert third not in (first, second) and third_directions == third
    # A generator directory without genint's training record is not genint's to retrain.
    (generator_dir / "training.json").unlink()
    assert ids(["datagen.generator.train.epochs=3"]) == (third, third)
    (generator_dir / "training.json").write_text("[1, 2]")
    with pytest.raises(DatagenError, match="training.json: not a genint training record") as caught:
        prepare_generator(load_config(job))
    assert "\n" not in str(caught.value)
