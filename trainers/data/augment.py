"""Image transforms as DALI graph fragments: training augmentation per stream, and evaluation.

Each function takes and returns DALI data nodes, so it is called inside a ``pipeline_def`` and
runs on whatever device its input lives on (CPU, or GPU after a ``mixed`` decode).
Outputs are float32 CHW, normalised with ``LoaderConfig.mean``/``std`` (given for [0, 1] pixels).
"""

from typing import Literal

from nvidia.dali import fn, types
from nvidia.dali.data_node import DataNode

from trainers.data.config import LoaderConfig

Augment = Literal["standard", "additional"]
# The aspect-ratio range of torchvision's RandomResizedCrop, so DALI and the baseline agree.
CROP_ASPECT_RATIO = (3 / 4, 4 / 3)


def decoder_device(device: str) -> str:
    """DALI decoder device for a torch device string: ``mixed`` (GPU output) for CUDA, else ``cpu``."""
    return "mixed" if device.startswith("cuda") else "cpu"


def _normalize(images: DataNode, loader: LoaderConfig, **crop_args) -> DataNode:
    return fn.crop_mirror_normalize(
        images,
        dtype=types.FLOAT,
        output_layout="CHW",
        mean=[255 * value for value in loader.mean],
        std=[255 * value for value in loader.std],
        **crop_args,
    )


def train_transform(encoded: DataNode, augment: Augment, loader: LoaderConfig, device: str) -> DataNode:
    """Decode and augment encoded images for training.

    ``standard``: random-resized crop (decoding only the crop window) and a horizontal flip.
    ``additional`` (the paper's stronger setting): standard plus a random rotation and a colour
    jitter of brightness, contrast, saturation and hue.

    Args:
        encoded: encoded JPEG/PNG bytes, one sample each.
        augment: which augmentation.
        loader: sizes, normalisation and augmentation strengths.
        device: torch device string the batches are for (``cpu`` or ``cuda[:i]``).

    Returns:
        Float32 CHW images of ``loader.crop_size`` square.
    """
    images = fn.decoders.image_random_crop(
        encoded,
        device=decoder_device(device),
        output_type=types.RGB,
        random_area=list(loader.crop_area),
        random_aspect_ratio=list(CROP_ASPECT_RATIO),
    )
    images = fn.resize(images, size=[loader.crop_size, loader.crop_size])
    if augment == "additional":
        images = fn.rotate(
            images,
            angle=fn.random.uniform(range=[-loader.rotate_max_deg, loader.rotate_max_deg]),
            keep_size=True,
            fill_value=0,
        )
        jitter_range = [max(0.0, 1 - loader.jitter), 1 + loader.jitter]
        images = fn.color_twist(
            images,
            brightness=fn.random.uniform(range=jitter_range),
            contrast=fn.random.uniform(range=jitter_range),
            saturation=fn.random.uniform(range=jitter_range),
            hue=fn.random.uniform(range=[-loader.hue_max_deg, loader.hue_max_deg]),
        )
    return _normalize(images, loader, mirror=fn.random.coin_flip())


def eval_transform(images: DataNode, loader: LoaderConfig) -> DataNode:
    """Evaluation transform of decoded HWC uint8 images: resize the shorter side to
    ``loader.resize_size``, centre-crop ``loader.crop_size``, normalise.

    Returns:
        Float32 CHW images of ``loader.crop_size`` square.
    """
    images = fn.resize(images, resize_shorter=loader.resize_size)
    return _normalize(images, loader, crop=[loader.crop_size, loader.crop_size])
