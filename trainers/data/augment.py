"""Image transforms as DALI graph fragments: training augmentation per stream, and evaluation.

Each function takes and returns DALI data nodes, so it is called inside a ``pipeline_def`` and
runs on whatever device its input lives on (CPU, or GPU after a ``mixed`` decode).
Outputs are float32 CHW, normalised with ``LoaderConfig.mean``/``std`` (given for [0, 1] pixels).
"""

from typing import Literal

from nvidia.dali import fn, types
from nvidia.dali.data_node import DataNode

from trainers.data.config import LoaderConfig

Augment = Literal["standard", "additional", "none"]
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

    ``none``: decode and resize to ``loader.crop_size`` (for images whose layout carries meaning).
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
    if augment == "none":
        images = fn.decoders.image(encoded, device=decoder_device(device), output_type=types.RGB)
        return _normalize(fn.resize(images, size=[loader.crop_size, loader.crop_size]), loader)
    (images,) = _train_images([encoded], augment, loader, device, crop_seed=None)
    return images


def paired_train_transform(encoded: DataNode, partner: DataNode, augment: Augment, loader: LoaderConfig, device: str,
                           crop_seed: int) -> tuple[DataNode, DataNode]:
    """``train_transform`` of a sample and its counterfactual partner with the same randomness, so the pair
    stays aligned: one crop window (two croppers seeded alike draw the same windows on same-sized images),
    one flip, one rotation and one colour jitter per pair.

    Args:
        crop_seed: the seed of both croppers (derive it from the pipeline's seed).
    """
    images, partners = _train_images([encoded, partner], augment, loader, device, crop_seed)
    return images, partners


def _train_images(encoded: list[DataNode], augment: Augment, loader: LoaderConfig, device: str,
                  crop_seed: int | None) -> list[DataNode]:
    seeded = {} if crop_seed is None else {"seed": crop_seed}
    images = [
        fn.decoders.image_random_crop(
            node,
            device=decoder_device(device),
            output_type=types.RGB,
            random_area=list(loader.crop_area),
            random_aspect_ratio=list(CROP_ASPECT_RATIO),
            **seeded,
        )
        for node in encoded
    ]
    images = [fn.resize(node, size=[loader.crop_size, loader.crop_size]) for node in images]
    if augment == "additional":
        angle = fn.random.uniform(range=[-loader.rotate_max_deg, loader.rotate_max_deg])
        images = [fn.rotate(node, angle=angle, keep_size=True, fill_value=0) for node in images]
        jitter_range = [max(0.0, 1 - loader.jitter), 1 + loader.jitter]
        brightness, contrast, saturation = (fn.random.uniform(range=jitter_range) for _ in range(3))
        hue = fn.random.uniform(range=[-loader.hue_max_deg, loader.hue_max_deg])
        images = [fn.color_twist(node, brightness=brightness, contrast=contrast, saturation=saturation, hue=hue) for node in images]
    mirror = fn.random.coin_flip()
    return [_normalize(node, loader, mirror=mirror) for node in images]


def eval_transform(images: DataNode, loader: LoaderConfig) -> DataNode:
    """Evaluation transform of decoded HWC uint8 images: resize the shorter side to
    ``loader.resize_size``, centre-crop ``loader.crop_size``, normalise.

    Returns:
        Float32 CHW images of ``loader.crop_size`` square.
    """
    images = fn.resize(images, resize_shorter=loader.resize_size)
    return _normalize(images, loader, crop=[loader.crop_size, loader.crop_size])
