"""Training the CGN: through `genint generator train` on a job's original stream (deterministic, saved,
loadable), and its losses, the Gram texture loss on a random-initialised VGG-19 given by path included."""

import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import write_stream
from torchvision.models import vgg19

from cluster.cli import main
from datagen.generators.cgn import load_cgn
from datagen.generators.cgn_config import CgnArchitecture, CgnTrainConfig
from datagen.generators.cgn_losses import texture_loss
from datagen.generators.cgn_training import ConvDiscriminator, train_cgn
from datagen.transfer.vgg import load_vgg_features

TINY = {"num_classes": 3, "image_size": 8, "noise_dim": 4, "label_embedding_dim": 3, "width": 4}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One thread: the 2 cores are shared, and OpenMP's spinning second thread slows tiny convolutions."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_generator_train_fits_a_cgn_on_the_original_stream_deterministically(tmp_path: Path, capsys):
    write_stream(tmp_path / "out" / "shards" / "original", 12)
    job = {"name": "cgn", "output_dir": str(tmp_path / "out"), "datagen": {
        "generator": {"kind": "cgn", "cgn_train": {"model": TINY, "epochs": 2, "batch_size": 4, "edge_px": 1}},
        "strategy": {"kind": "counterfactual", "seeds_per_class": 2}}}
    ids = []
    for run in ("first", "second"):
        job["datagen"]["generator"]["weights"] = str(tmp_path / run)
        (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
        assert main(["generator", "train", str(tmp_path / "job.yaml")]) == 0
        assert f"generator: trained CGN saved to {tmp_path / run}" in capsys.readouterr().out.replace("\n", "")
        ids.append(load_cgn(tmp_path / run).generator_id)
    assert ids[0] == ids[1]  # same seed and data, same weights
    generator = load_cgn(tmp_path / "first")
    images = generator.generate(generator.sample_latents([0, 1, 2], 1.0), torch.tensor([0, 1, 2]), 1.0)
    assert images.shape == (3, 3, 8, 8)


def test_texture_loss_on_random_vgg_weights_by_path(tmp_path: Path):
    torch.manual_seed(0)
    path = tmp_path / "vgg19-features.pt"
    torch.save(vgg19().features.state_dict(), path)
    features = load_vgg_features(str(path), ("conv1_1",), torch.device("cpu"))
    images = torch.rand(2, 3, 8, 8)
    assert texture_loss(features, images, images, ("conv1_1",)).item() == 0
    assert texture_loss(features, images, images.flip(0).roll(3, dims=2) * 0.5, ("conv1_1",)).item() > 0
    config = CgnTrainConfig(model=CgnArchitecture(**TINY), epochs=2, batch_size=4, edge_px=1,
                            texture_weight=1.0, texture_features=path, texture_layers=("conv1_1",))
    labels = torch.arange(8) % 3
    _, history = train_cgn(torch.rand(8, 3, 8, 8), labels, config)
    assert len(history) == 2 and all(math.isfinite(value) for epoch in history for value in vars(epoch).values())
    assert history[0].texture > 0 and 0 < history[0].binary <= math.log(2) + 1e-6


def test_conv_discriminator_and_narrow_textures_train_save_and_load(tmp_path: Path):
    assert "texture_width" not in CgnArchitecture(**TINY).model_dump_json()  # unset: saved CGNs keep their config.json and id
    discriminator = ConvDiscriminator(num_classes=3, image_size=8, width=6, dropout=0.0, channels=2)
    scores = discriminator(torch.rand(2, 3, 8, 8).repeat(2, 1, 1, 1), torch.tensor([0, 0, 1, 1]))
    assert scores.shape == (4,) and not torch.allclose(scores[:2], scores[2:])  # the class projection moves the score
    config = CgnTrainConfig(model=CgnArchitecture(**TINY, texture_width=2), epochs=2, batch_size=4, edge_px=1,
                            discriminator="conv", discriminator_width=6, discriminator_channels=2)
    generator, history = train_cgn(torch.rand(8, 3, 8, 8), torch.arange(8) % 3, config)
    assert len(history) == 2 and all(math.isfinite(value) for epoch in history for value in vars(epoch).values())
    generator.save(tmp_path / "cgn")
    loaded = load_cgn(tmp_path / "cgn")
    assert loaded.generator_id == generator.generator_id
    assert loaded.model.texture.project.out_features == 2 * 2 * 2**2 < loaded.model.shape.project.out_features  # 2 width x (S/4)^2
