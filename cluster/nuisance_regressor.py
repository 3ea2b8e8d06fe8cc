"""The correlation analysis's nuisance regressor: image -> the latent offsets an intervention set.

A generated interventional sample records which components it set and to which offsets
(``components`` and ``offsets`` in its provenance, one component per image in genint's
strategies). The regressor has one output per component and an L1 loss on the recorded ones only:
the other coordinates of that image's latent were not set, so they are not a target. On any image
it then predicts a value for every component, the image's nuisances.
"""

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from cluster.correlation_config import NuisanceRegressorConfig
from cluster.errors import ClusterError
from datagen.limits import MAX_DIMENSIONS
from trainers.models import build_model


@dataclass(frozen=True)
class InterventionTargets:
    """What each sample's intervention set: float32 (N, k) offsets, bool (N, k) which were set."""

    offsets: np.ndarray
    recorded: np.ndarray

    @property
    def components(self) -> int:
        return self.offsets.shape[1]


def _edits(record: dict, where: str) -> list[tuple[int, float]]:
    """(component, offset) pairs of one provenance record; a real image records none."""
    components, offsets = record.get("components", []), record.get("offsets", [])
    if not isinstance(components, list) or not isinstance(offsets, list) or len(components) != len(offsets):
        raise ClusterError(f"{where}: components and offsets must be lists of one length (got {components!r:.60}, {offsets!r:.60})")
    for component, offset in zip(components, offsets):
        if type(component) is not int or not 0 <= component < MAX_DIMENSIONS:
            raise ClusterError(f"{where}: a component must be a whole number from 0 to {MAX_DIMENSIONS - 1} (got {component!r:.40})")
        if type(offset) not in (int, float) or not math.isfinite(offset):
            raise ClusterError(f"{where}: an offset must be a finite number (got {offset!r:.40})")
    return list(zip(components, offsets))


def intervention_targets(provenance: list[dict], keys: list[str], stream: str) -> InterventionTargets:
    """The regression targets of a stream from its samples' provenance records.

    Args:
        provenance: each sample's record (``shards.images.read_stream_samples``).
        keys: the samples' keys, for messages.
        stream: the stream's name, for messages.

    Returns:
        Targets with one column per component up to the largest one recorded (none: 0 columns).

    Raises:
        ClusterError: a record whose components or offsets are malformed, naming the sample.
    """
    edits = [_edits(record, f"stream {stream}: sample {key}") for record, key in zip(provenance, keys)]
    columns = 1 + max((component for pairs in edits for component, _ in pairs), default=-1)
    offsets = np.zeros((len(edits), columns), np.float32)
    recorded = np.zeros((len(edits), columns), bool)
    for row, pairs in enumerate(edits):
        for component, offset in pairs:
            offsets[row, component], recorded[row, component] = offset, True
    return InterventionTargets(offsets, recorded)


@dataclass(frozen=True)
class RegressorFit:
    """How well the regressor learned its stream: mean L1 over recorded offsets, in offset units,
    on its training share and its held-out share, beside predicting each component's training
    median (the paper: 0.009 train, 0.36 validation, about 5.6 guessing)."""

    stream: str
    model: str
    components: int
    train_samples: int
    held_out_samples: int
    train_l1: float
    held_out_l1: float
    constant_l1: float

    def to_dict(self) -> dict:
        return asdict(self)


def _masked_l1(predicted: torch.Tensor, target: torch.Tensor, recorded: torch.Tensor) -> torch.Tensor:
    return ((predicted - target).abs() * recorded).sum() / recorded.sum().clamp(min=1)


def _strided_block(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, 3, stride=2, padding=1, bias=False),
                         nn.BatchNorm2d(channels_out), nn.ReLU(inplace=True))


class NuisanceCnn(nn.Module):
    """Four stride-2 conv blocks (16, 32, 64, 64 channels), global average pool, a linear head.

    About a fifteenth of small_cnn's cost at 32 px (no full-resolution layers): the regressor
    learns a few global factors (colours, textures, pose), and the analysis must stay well under a
    minute on two cores for the digits' streams.
    """

    def __init__(self, outputs: int) -> None:
        super().__init__()
        self.features = nn.Sequential(_strided_block(3, 16), _strided_block(16, 32), _strided_block(32, 64),
                                      _strided_block(64, 64), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(64, outputs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(images).flatten(1))


def build_regressor(model: str, outputs: int) -> nn.Module:
    """The regressor network: ``nuisance_cnn`` or one of trainers' classifiers, ``outputs`` wide."""
    return NuisanceCnn(outputs) if model == "nuisance_cnn" else build_model(model, outputs)


class NuisanceRegressor:
    """A trained image -> nuisances model with its input and output scaling."""

    def __init__(self, model: nn.Module, pixel_mean: torch.Tensor, pixel_std: torch.Tensor,
                 offset_scale: torch.Tensor, device: torch.device, batch_size: int):
        self.model, self.device, self.batch_size = model, device, batch_size
        self.pixel_mean, self.pixel_std, self.offset_scale = pixel_mean, pixel_std, offset_scale

    def _inputs(self, images: np.ndarray) -> torch.Tensor:
        pixels = torch.from_numpy(images).to(self.device, torch.float32) / 255
        return (pixels - self.pixel_mean) / self.pixel_std

    def scaled_outputs(self, images: np.ndarray) -> torch.Tensor:
        """The model's outputs for uint8 (B, 3, S, S) images, in units of each component's offset spread."""
        return self.model(self._inputs(images))

    @torch.no_grad()
    def predict(self, images: np.ndarray) -> np.ndarray:
        """float32 (N, k) predicted offsets of uint8 (N, 3, S, S) images, in offset units."""
        self.model.eval()
        parts = [self.scaled_outputs(images[first: first + self.batch_size]) * self.offset_scale
                 for first in range(0, len(images), self.batch_size)]
        return torch.cat(parts).cpu().numpy() if parts else np.zeros((0, len(self.offset_scale)), np.float32)


def _split(count: int, held_out_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(count)
    held_out = min(count - 1, max(1, round(held_out_fraction * count)))
    return order[held_out:], order[:held_out]


def _recorded_l1(predicted: np.ndarray, targets: InterventionTargets, rows: np.ndarray) -> float:
    recorded = targets.recorded[rows]
    return float(np.abs(predicted - targets.offsets[rows])[recorded].mean())


def train_nuisance_regressor(images: np.ndarray, targets: InterventionTargets, stream: str,
                             config: NuisanceRegressorConfig, seed: int, device: torch.device
                             ) -> tuple[NuisanceRegressor, RegressorFit]:
    """Fit the regressor on the samples of ``stream`` that record an intervention.

    Args:
        images: uint8 (N, 3, S, S). targets: their recorded offsets. stream: its name, for messages.
        config: model, epochs, learning rate, batch size, held-out share. seed: fixes split and init.
        device: where it trains.

    Returns:
        The regressor and its fit (L1 on the training and held-out shares).

    Raises:
        ClusterError: fewer than two samples record an intervention.
    """
    edited = np.flatnonzero(targets.recorded.any(axis=1))
    if len(edited) < 2:
        raise ClusterError(f"correlation.regressor_stream: stream {stream!r} has {len(edited)} samples with intervention "
                           "offsets; the regressor needs at least 2")
    train_rows, held_out_rows = (edited[part] for part in _split(len(edited), config.held_out_fraction, seed))
    torch.manual_seed(seed)
    model = build_regressor(config.model, targets.components).to(device)
    train_pixels = images[train_rows].astype(np.float32) / 255
    pixel_mean = torch.tensor(train_pixels.mean(axis=(0, 2, 3)), device=device).view(1, 3, 1, 1)
    pixel_std = torch.tensor(train_pixels.std(axis=(0, 2, 3)) + 1e-3, device=device).view(1, 3, 1, 1)
    # Offsets of different components can differ in range by 10x (BigGAN's reference ranges): the
    # loss sees each in units of its own spread, so every component weighs alike.
    spread = [targets.offsets[train_rows, column][targets.recorded[train_rows, column]] for column in range(targets.components)]
    offset_scale = torch.tensor([values.std() if len(values) > 1 and values.std() > 0 else 1.0 for values in spread],
                                dtype=torch.float32, device=device)
    regressor = NuisanceRegressor(model, pixel_mean, pixel_std, offset_scale, device, config.batch_size)
    scaled_targets = torch.from_numpy(targets.offsets).to(device) / offset_scale
    recorded = torch.from_numpy(targets.recorded).to(device, torch.float32)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    shuffle = torch.Generator().manual_seed(seed)
    for _ in range(config.epochs):
        model.train()
        order = train_rows[torch.randperm(len(train_rows), generator=shuffle).numpy()]
        for first in range(0, len(order), config.batch_size):
            rows = order[first: first + config.batch_size]
            if len(rows) < 2:  # batch norm cannot train on one image (a ResNet's last block is 1x1 at 32 px)
                continue
            loss = _masked_l1(regressor.scaled_outputs(images[rows]), scaled_targets[rows], recorded[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    medians = np.array([np.median(values) if len(values) else 0.0 for values in spread], np.float32)
    fit = RegressorFit(
        stream=stream, model=config.model, components=targets.components,
        train_samples=len(train_rows), held_out_samples=len(held_out_rows),
        train_l1=_recorded_l1(regressor.predict(images[train_rows]), targets, train_rows),
        held_out_l1=_recorded_l1(regressor.predict(images[held_out_rows]), targets, held_out_rows),
        constant_l1=_recorded_l1(np.broadcast_to(medians, (len(held_out_rows), len(medians))), targets, held_out_rows),
    )
    return regressor, fit
