"""GANSpace directions: recovery on a known linear layer, resume, file format and checks."""

from pathlib import Path

import numpy as np
import pytest
import torch

from datagen.directions import (
    GANSPACE_KEYS,
    DirectionsConfig,
    compute_directions,
    load_directions,
)
from datagen.errors import DatagenError
from datagen.generators.biggan import BigGANGenerator, random_biggan, tiny_biggan_config


class LinearLayerGenerator:
    """A generator whose direction layer is features = z @ A.T with A = V diag(sigma) U.T, so the
    GANSpace directions are the rows of U.T (in order of decreasing sigma)."""

    generator_id = "linear-test"
    num_classes = 1
    image_size = 4
    device = torch.device("cpu")

    def __init__(self, latent_dim: int = 6, features: int = 12, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.latent_dim = latent_dim
        self.u = np.linalg.qr(rng.normal(size=(latent_dim, latent_dim)))[0]
        v = np.linalg.qr(rng.normal(size=(features, latent_dim)))[0]
        sigma = np.linspace(6.0, 1.0, latent_dim)
        self.matrix = torch.from_numpy((v * sigma) @ self.u.T).float()

    def sample_latents(self, seeds, truncation):
        return torch.stack([torch.randn(self.latent_dim, generator=torch.Generator().manual_seed(seed)) for seed in seeds]) * truncation

    def direction_features(self, latents, classes):
        return latents @ self.matrix.T


def test_pca_and_regression_recover_the_known_directions(tmp_path: Path):
    generator = LinearLayerGenerator()
    config = DirectionsConfig(samples=4000, components=3, batch_size=500, regression_samples=2000)
    directions = compute_directions(generator, config, tmp_path / "state.npz")
    alignment = np.abs(np.sum(directions.lat_comp * generator.u.T[:3], axis=1))
    assert alignment == pytest.approx(np.ones(3), abs=0.01)  # finite-sample error ~ 1/sqrt(n)
    assert np.linalg.norm(directions.lat_comp, axis=1) == pytest.approx(np.ones(3))
    # Latents are standard normal, so their spread along any unit direction is about 1.
    assert directions.lat_stdev == pytest.approx(np.ones(3), abs=0.1)
    assert directions.var_ratio[0] > directions.var_ratio[1] > directions.var_ratio[2]


def test_interrupted_run_resumes_to_the_same_directions(tmp_path: Path):
    generator = LinearLayerGenerator()
    config = DirectionsConfig(samples=3000, components=3, batch_size=300, regression_samples=600, checkpoint_every_batches=2)
    uninterrupted = compute_directions(generator, config, tmp_path / "a.npz")

    def stop_after_five_batches(done: int, total: int) -> None:
        if done == 1500:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compute_directions(generator, config, tmp_path / "b.npz", on_progress=stop_after_five_batches)
    progress = []
    resumed = compute_directions(generator, config, tmp_path / "b.npz", on_progress=lambda done, total: progress.append(done))
    assert progress[0] == 1500  # batches 0-3 came from the saved state, batch 4 was redone
    np.testing.assert_allclose(resumed.lat_comp, uninterrupted.lat_comp, atol=1e-9)
    np.testing.assert_allclose(resumed.act_comp, uninterrupted.act_comp, atol=1e-9)


def test_state_from_other_settings_is_refused(tmp_path: Path):
    generator = LinearLayerGenerator()
    compute_directions(generator, DirectionsConfig(samples=600, components=2, batch_size=300, regression_samples=300), tmp_path / "s.npz")
    with pytest.raises(DatagenError, match="other settings"):
        compute_directions(generator, DirectionsConfig(samples=900, components=2, batch_size=300, regression_samples=300), tmp_path / "s.npz")


def test_tiny_biggan_directions_file_reloads_with_ganspace_shapes(tmp_path: Path):
    config = tiny_biggan_config(num_classes=4, image_size=16, z_dim=16, channel_width=4)
    generator = BigGANGenerator(random_biggan(config), "tiny", torch.device("cpu"))
    directions = compute_directions(generator, DirectionsConfig(samples=64, components=5, batch_size=32, regression_samples=64), tmp_path / "s.npz")
    directions.save(tmp_path / "directions.npz")
    loaded = load_directions(tmp_path / "directions.npz", latent_dim=16)
    features = 4 * 4 * 16 * 4
    expected = {"lat_comp": (5, 16), "lat_mean": (16,), "lat_stdev": (5,), "act_comp": (5, features),
                "act_mean": (features,), "act_stdev": (5,), "var_ratio": (5,)}
    assert {key: getattr(loaded, key).shape for key in GANSPACE_KEYS} == expected
    assert loaded.content_hash == directions.content_hash and loaded.generator_id == "tiny"
    with np.load(tmp_path / "directions.npz") as data:
        assert set(GANSPACE_KEYS) <= set(data.files)


def test_directions_for_another_latent_size_are_refused(tmp_path: Path):
    generator = LinearLayerGenerator(latent_dim=6)
    directions = compute_directions(generator, DirectionsConfig(samples=300, components=2, batch_size=300, regression_samples=300), tmp_path / "s.npz")
    directions.save(tmp_path / "d.npz")
    with pytest.raises(DatagenError, match="latent of size 6.*size 16"):
        load_directions(tmp_path / "d.npz", latent_dim=16)


def test_damaged_directions_file_is_refused(tmp_path: Path):
    (tmp_path / "d.npz").write_bytes(b"not an npz")
    with pytest.raises(DatagenError, match="not a genint directions file"):
        load_directions(tmp_path / "d.npz")
    with pytest.raises(DatagenError, match="file not found"):
        load_directions(tmp_path / "missing.npz")
