"""BigGAN-deep from ``pytorch-pretrained-biggan`` behind the Generator interface.

Weights load by model name (the library downloads and caches them) or from a local directory
holding ``config.json`` and ``pytorch_model.bin``. The library's own ``from_pretrained`` loads
non-strictly and would hide a truncated or mismatched checkpoint, so we resolve the files through
the library and load the state dict ourselves with every key checked.
"""

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from pytorch_pretrained_biggan import BigGAN, BigGANConfig
from pytorch_pretrained_biggan.file_utils import cached_path
from pytorch_pretrained_biggan.model import (
    CONFIG_NAME,
    PRETRAINED_CONFIG_ARCHIVE_MAP,
    PRETRAINED_MODEL_ARCHIVE_MAP,
    WEIGHTS_NAME,
)
from scipy.stats import truncnorm

from datagen.errors import DatagenError
from datagen.generators.checks import check_state_dict_keys, first_line, load_state_dict_file

MODEL_NAMES = tuple(PRETRAINED_MODEL_ARCHIVE_MAP)
# BigGAN-deep's latents are truncated normals cut at +-2 before scaling by the truncation.
TRUNCATION_BOUND = 2.0


def _resolve_files(name_or_path: str) -> tuple[Path, Path, str | None]:
    """(config file, weights file, model name or None for a local directory)."""
    if name_or_path in PRETRAINED_MODEL_ARCHIVE_MAP:
        try:
            config_file = cached_path(PRETRAINED_CONFIG_ARCHIVE_MAP[name_or_path])
            weights_file = cached_path(PRETRAINED_MODEL_ARCHIVE_MAP[name_or_path])
        except (OSError, ValueError) as error:
            raise DatagenError(f"BigGAN {name_or_path}: cannot download weights ({error}); pass a local directory instead") from None
        return Path(config_file), Path(weights_file), name_or_path
    directory = Path(name_or_path)
    if not directory.is_dir():
        raise DatagenError(
            f"BigGAN weights {directory}: not a directory and not a model name (known: {', '.join(MODEL_NAMES)})"
        )
    for required in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / required).is_file():
            raise DatagenError(f"BigGAN weights {directory}: missing {required}")
    return directory / CONFIG_NAME, directory / WEIGHTS_NAME, None


class BigGANGenerator:
    """A BigGAN-deep model; see ``datagen.generators.base.Generator``."""

    def __init__(self, model: BigGAN, generator_id: str, device: torch.device, precision: str = "fp32"):
        self.model = model.eval().requires_grad_(False)
        self.generator_id = generator_id
        self.latent_dim = model.config.z_dim
        self.num_classes = model.config.num_classes
        self.image_size = model.config.output_dim
        self.device = device
        # Reduced precision and channels_last only pay off (and only are exact enough) on CUDA.
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
        if device.type == "cuda":
            self.model = self.model.to(device=device, dtype=self.dtype, memory_format=torch.channels_last)
        else:
            self.dtype = torch.float32

    def sample_latents(self, seeds: Sequence[int], truncation: float) -> torch.Tensor:
        rows = [
            truncnorm.rvs(-TRUNCATION_BOUND, TRUNCATION_BOUND, size=self.latent_dim, random_state=np.random.RandomState(seed))
            for seed in seeds
        ]
        return torch.from_numpy(truncation * np.asarray(rows, dtype=np.float32).reshape(len(seeds), self.latent_dim))

    def _one_hot(self, classes: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(classes.long(), self.num_classes).to(self.device, self.dtype)

    @torch.inference_mode()
    def generate(self, latents: torch.Tensor, classes: torch.Tensor, truncation: float) -> torch.Tensor:
        # The truncation both scaled the latents (sample_latents) and picks the batch-norm statistics here.
        images = self.model(latents.to(self.device, self.dtype), self._one_hot(classes), truncation)
        return ((images.float() + 1) / 2).clamp_(0, 1).cpu()

    @torch.inference_mode()
    def direction_features(self, latents: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        embedding = self.model.embeddings(self._one_hot(classes))
        condition = torch.cat((latents.to(self.device, self.dtype), embedding), dim=1)
        return self.model.generator.gen_z(condition).float().cpu()

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(self.model.config.to_json_string())
        state = {key: value.float().cpu() for key, value in self.model.state_dict().items()}
        torch.save(state, directory / WEIGHTS_NAME)


def load_biggan(name_or_path: str, device: torch.device, precision: str = "fp32") -> BigGANGenerator:
    """Load BigGAN-deep by model name (downloads) or from a local directory, every weight key checked.

    Raises:
        DatagenError: missing files, unreadable weights, or keys that do not match the config.
    """
    config_file, weights_file, model_name = _resolve_files(name_or_path)
    model = _model_of_config(Path(config_file))
    state = load_state_dict_file(Path(weights_file), "BigGAN weights")
    check_state_dict_keys(model, state, f"BigGAN weights {weights_file}")
    model.load_state_dict(state)
    # A local copy is named by its content so provenance says exactly which weights made an image.
    generator_id = model_name or f"biggan-{_file_digest(weights_file)[:12]}"
    return BigGANGenerator(model, generator_id, device, precision)


def _model_of_config(path: Path) -> BigGAN:
    """A BigGAN of the architecture in ``config.json``, or a one-line DatagenError naming the file."""
    try:
        fields = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatagenError(f"BigGAN config {path}: cannot read ({first_line(error)})") from None
    if not isinstance(fields, dict) or not set(fields) <= set(vars(BigGANConfig())):
        raise DatagenError(f"BigGAN config {path}: not a BigGAN config (expected an object with the fields of BigGANConfig)")
    try:
        return BigGAN(BigGANConfig.from_dict(fields))
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError) as error:  # a field of the wrong type or range
        raise DatagenError(f"BigGAN config {path}: not a valid BigGAN config ({first_line(error)})") from None


def _file_digest(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def random_biggan(config: BigGANConfig, seed: int = 0, device: str | torch.device = "cpu") -> BigGAN:
    """A random-initialised BigGAN (for tests and speed benchmarks; no download), on ``device``.

    The library leaves the final unconditional batch norm's affine parameters uninitialised
    (``torch.Tensor(n)``), so they are set to the identity here; and spectral norm's singular
    vectors start random, so a few training-mode passes run its power iteration until the
    normalised weights stop blowing activations up. At full size (BigGAN-deep-256) those passes
    take minutes on a CPU and well under a second on a GPU, hence ``device``.
    """
    torch.manual_seed(seed)
    model = BigGAN(config).to(device)
    with torch.no_grad():
        model.generator.bn.weight.fill_(1.0)
        model.generator.bn.bias.zero_()
        model.train()
        classes = torch.nn.functional.one_hot(torch.arange(2, device=device) % config.num_classes, config.num_classes).float()
        for _ in range(20):
            model(torch.zeros(2, config.z_dim, device=device), classes, 1.0)
    return model.eval()


def tiny_biggan_config(num_classes: int = 10, image_size: int = 32, z_dim: int = 16, channel_width: int = 4) -> BigGANConfig:
    """A reduced-width BigGAN-deep (for tests and CPU demos): 4x4 doubled up to ``image_size``."""
    upsamples = int(np.log2(image_size // 4))
    if 4 * 2**upsamples != image_size:
        raise DatagenError(f"tiny BigGAN image_size must be 4 x a power of two (got {image_size})")
    # gen_z feeds 16 x channel_width channels and the last block must give channel_width; each block
    # that changes width halves it exactly (the library drops half the skip channels), so four halvings.
    upsample_flags = [False] * max(4 - upsamples, 0) + [True] * upsamples
    layers, width = [], 16
    for position, upsample in enumerate(upsample_flags):
        halve = position >= len(upsample_flags) - 4
        layers.append((upsample, width, width // 2 if halve else width))
        width = layers[-1][2]
    return BigGANConfig(
        output_dim=image_size, z_dim=z_dim, class_embed_dim=z_dim, channel_width=channel_width,
        num_classes=num_classes, layers=layers, attention_layer_position=len(layers) - 1,
    )
