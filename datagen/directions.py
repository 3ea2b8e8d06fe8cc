"""GANSpace directions: PCA of a generator layer's activations, regressed back to latent space.

Pass 1 streams ``samples`` latents of one class through the generator's direction layer into
scikit-learn's IncrementalPCA, so memory stays bounded by one batch whatever the sample count;
its state is saved every few batches so an interrupted run resumes where it stopped. Pass 2
regresses the std-scaled PCA coordinates onto the latents by accumulating the normal equations
(again one batch at a time) and normalises each row: one unit direction per component.
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import IncrementalPCA

from datagen.directions_config import DirectionsConfig
from datagen.errors import DatagenError
from datagen.generators.base import Generator
from shards.files import write_durably_with

GANSPACE_KEYS = ("lat_comp", "lat_mean", "lat_stdev", "act_comp", "act_mean", "act_stdev", "var_ratio")
# IncrementalPCA's fitted state; saved as arrays so a resume never unpickles anything.
_PCA_STATE = ("components_", "mean_", "var_", "singular_values_", "explained_variance_",
              "explained_variance_ratio_", "noise_variance_", "n_samples_seen_")


@dataclass
class Directions:
    """K unit directions in latent space and the PCA they came from (GANSpace's arrays)."""

    lat_comp: np.ndarray  # (K, latent_dim), unit rows
    lat_mean: np.ndarray  # (latent_dim,)
    lat_stdev: np.ndarray  # (K,) spread of the latents along each direction
    act_comp: np.ndarray  # (K, features)
    act_mean: np.ndarray  # (features,)
    act_stdev: np.ndarray  # (K,)
    var_ratio: np.ndarray  # (K,)
    generator_id: str

    @property
    def content_hash(self) -> str:
        """sha256 over the arrays and the generator id (recorded with every generated image)."""
        digest = hashlib.sha256(self.generator_id.encode())
        for key in GANSPACE_KEYS:
            array = np.ascontiguousarray(getattr(self, key), dtype=np.float32)
            digest.update(key.encode() + json.dumps(array.shape).encode() + array.tobytes())
        return digest.hexdigest()

    def save(self, path: Path) -> None:
        """Write the ``.npz`` (GANSpace keys plus generator id and content hash) atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {key: np.asarray(getattr(self, key), dtype=np.float32) for key in GANSPACE_KEYS}
        extra = {"generator_id": np.array(self.generator_id), "sha256": np.array(self.content_hash)}
        write_durably_with(path, lambda handle: np.savez(handle, **arrays, **extra))


def load_directions(path: Path, latent_dim: int | None = None) -> Directions:
    """Read a directions file, checking its hash and (when given) the generator's latent size.

    Raises:
        DatagenError: a missing or damaged file, or directions made for a latent of another size.
    """
    path = Path(path)
    if not path.is_file():
        raise DatagenError(f"directions {path}: file not found (compute it with `genint directions CONFIG`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            fields = {key: data[key] for key in GANSPACE_KEYS}
            generator_id, recorded = str(data["generator_id"]), str(data["sha256"])
    except (OSError, ValueError, KeyError) as error:
        raise DatagenError(f"directions {path}: not a genint directions file ({error})") from None
    directions = Directions(**fields, generator_id=generator_id)
    if directions.content_hash != recorded:
        raise DatagenError(f"directions {path}: content hash mismatch (file damaged or edited)")
    if latent_dim is not None and directions.lat_comp.shape[1] != latent_dim:
        raise DatagenError(
            f"directions {path}: made for a latent of size {directions.lat_comp.shape[1]} "
            f"(generator {generator_id}), this generator's latent has size {latent_dim}"
        )
    return directions


def _batch_inputs(generator: Generator, config: DirectionsConfig, batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    seeds = [config.seed * 10**9 + batch * config.batch_size + offset for offset in range(size)]
    latents = generator.sample_latents(seeds, truncation=1.0)
    return latents, generator.direction_features(latents, torch.full((size,), config.class_index))


def _batch_sizes(total: int, batch_size: int) -> list[int]:
    sizes = [batch_size] * (total // batch_size)
    # A short last batch below the component count would make IncrementalPCA refuse; fold it in.
    if total % batch_size:
        if sizes:
            sizes[-1] += total % batch_size
        else:
            sizes = [total]
    return sizes


class _PcaState:
    """IncrementalPCA plus the next batch to feed, saved to and restored from an ``.npz``."""

    def __init__(self, path: Path, config: DirectionsConfig, generator_id: str):
        self.path = path
        self.fingerprint = json.dumps([config.model_dump(mode="json", exclude={"path"}), generator_id], sort_keys=True)
        self.pca = IncrementalPCA(n_components=config.components)
        self.next_batch = 0
        if path.exists():
            with np.load(path, allow_pickle=False) as data:
                if str(data["fingerprint"]) != self.fingerprint:
                    raise DatagenError(f"directions state {path}: made with other settings; delete it to start over")
                for name in _PCA_STATE:
                    setattr(self.pca, name, data[name] if data[name].ndim else data[name].item())
                self.pca.n_components_ = config.components
                self.pca.n_features_in_ = self.pca.components_.shape[1]
                self.next_batch = int(data["next_batch"])

    def save(self) -> None:
        arrays = {name: np.asarray(getattr(self.pca, name)) for name in _PCA_STATE}
        extra = {"next_batch": np.array(self.next_batch), "fingerprint": np.array(self.fingerprint)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_durably_with(self.path, lambda handle: np.savez(handle, **arrays, **extra))


def compute_directions(
    generator: Generator,
    config: DirectionsConfig,
    state_path: Path,
    on_progress: Callable[[int, int], None] | None = None,
) -> Directions:
    """Run GANSpace on ``generator``: incremental PCA of its direction layer, then the regression to z.

    Args:
        generator: any Generator; only ``sample_latents`` and ``direction_features`` are used.
        config: sample counts, components, batch size, class and seed.
        state_path: where the partial PCA is saved; an existing state with the same settings is resumed.
        on_progress: called with (samples done, total samples over both passes).

    Returns:
        The directions (not yet saved).
    """
    state = _PcaState(Path(state_path), config, generator.generator_id)
    fit_sizes = _batch_sizes(config.samples, config.batch_size)
    regression_sizes = _batch_sizes(min(config.regression_samples, config.samples), config.batch_size)
    total = config.samples + sum(regression_sizes)
    for batch in range(state.next_batch, len(fit_sizes)):
        _, features = _batch_inputs(generator, config, batch, fit_sizes[batch])
        state.pca.partial_fit(features.double().numpy())
        state.next_batch = batch + 1
        if state.next_batch % config.checkpoint_every_batches == 0:
            state.save()
        if on_progress:
            on_progress(sum(fit_sizes[: batch + 1]), total)
    state.save()
    pca = state.pca
    act_stdev = np.sqrt(pca.explained_variance_)
    # Normal equations of coords @ M = z - mean(z), accumulated batch by batch.
    k, d = config.components, generator.latent_dim
    coords_gram, coords_latents = np.zeros((k, k)), np.zeros((k, d))
    coords_sum, latent_sum, latent_gram, count = np.zeros(k), np.zeros(d), np.zeros((d, d)), 0
    for batch, size in enumerate(regression_sizes):
        latents, features = _batch_inputs(generator, config, batch, size)
        z = latents.double().numpy()
        coords = (features.double().numpy() - pca.mean_) @ pca.components_.T / act_stdev
        coords_gram += coords.T @ coords
        coords_latents += coords.T @ z
        coords_sum, latent_sum, latent_gram, count = coords_sum + coords.sum(0), latent_sum + z.sum(0), latent_gram + z.T @ z, count + size
        if on_progress:
            on_progress(config.samples + sum(regression_sizes[: batch + 1]), total)
    latent_mean = latent_sum / count
    solution = np.linalg.lstsq(coords_gram, coords_latents - np.outer(coords_sum, latent_mean), rcond=None)[0]
    lat_comp = solution / np.linalg.norm(solution, axis=1, keepdims=True)
    latent_covariance = latent_gram / count - np.outer(latent_mean, latent_mean)
    lat_stdev = np.sqrt(np.einsum("kd,de,ke->k", lat_comp, latent_covariance, lat_comp))
    return Directions(
        lat_comp=lat_comp, lat_mean=latent_mean, lat_stdev=lat_stdev,
        act_comp=pca.components_, act_mean=pca.mean_, act_stdev=act_stdev,
        var_ratio=pca.explained_variance_ratio_, generator_id=generator.generator_id,
    )
