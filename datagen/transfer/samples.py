"""From (content sample, style sample) pairs to transferred samples ready for the shard writer.

A transferred sample keeps the content image's label, names its content and style keys, and carries
the style sample's own provenance, so later objectives can find both images of the pair.
"""

import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from datagen.errors import DatagenError
from datagen.transfer.config import TransferConfig
from datagen.transfer.gatys import transfer_batch
from datagen.transfer.vgg import VggFeatures
from shards.errors import SampleError
from shards.sample import IMAGE_EXTENSIONS, encode_class

STREAM = "transferred"
GENERATOR_ID = "gatys-vgg19"
_KEY_PREFIX_CHARS = 64  # + "-itr-" + 16 hex stays within the 90-character sample key limit


def _pair_digest(content_key: str, style_key: str) -> str:
    return hashlib.sha256(f"{content_key}\0{style_key}".encode()).hexdigest()


def transferred_key(content_key: str, style_key: str) -> str:
    """A unique, deterministic sample key for the pair: the content key (cut to 64 characters) and a pair hash."""
    return f"{content_key[:_KEY_PREFIX_CHARS]}-itr-{_pair_digest(content_key, style_key)[:16]}"


def draw_steps(content_key: str, style_key: str, config: TransferConfig) -> int:
    """The pair's L-BFGS step count, uniform in [min_steps, max_steps], fixed by the seed and the two keys.

    Drawn per pair rather than from a running generator, so it does not depend on batching or order.
    """
    seed = int(_pair_digest(f"{config.seed}:{content_key}", style_key)[:16], 16)
    return int(np.random.default_rng(seed).integers(config.min_steps, config.max_steps, endpoint=True))


def _image_field(sample: dict[str, Any]) -> bytes:
    fields = [ext for ext in IMAGE_EXTENSIONS if ext in sample]
    if len(fields) != 1:
        raise DatagenError(f"sample {sample.get('__key__')!r}: needs exactly one image field of {IMAGE_EXTENSIONS} (got {fields})")
    return sample[fields[0]]


def _provenance(sample: dict[str, Any]) -> dict[str, Any]:
    record = sample.get("json", {})
    try:
        record = json.loads(record) if isinstance(record, (bytes, str)) else record
    except ValueError as error:
        raise DatagenError(f"sample {sample.get('__key__')!r}: json field is not valid JSON ({error})") from None
    if not isinstance(record, dict):
        raise DatagenError(f"sample {sample.get('__key__')!r}: json must be an object (got {type(record).__name__})")
    return record


def decode_image(sample: dict[str, Any], size: int) -> torch.Tensor:
    """The sample's image as float32 (3, size, size) in [0, 1]: shorter side resized to ``size``, centre-cropped."""
    try:
        with Image.open(io.BytesIO(_image_field(sample))) as opened:
            image = TF.to_image(opened.convert("RGB"))
    except OSError as error:
        raise DatagenError(f"sample {sample.get('__key__')!r}: image does not decode ({error})") from None
    image = TF.resize(image, size, antialias=True)
    return TF.to_dtype(TF.center_crop(image, size), torch.float32, scale=True)


def encode_image(image: torch.Tensor, size: int, image_format: str, jpeg_quality: int) -> bytes:
    """Encode an image (3, H, W) in [0, 1], resized to (size, size), as JPEG or PNG bytes."""
    pixels = TF.to_dtype(TF.resize(image.clamp(0, 1), [size, size], antialias=True).clamp(0, 1), torch.uint8, scale=True)
    buffer = io.BytesIO()
    picture = TF.to_pil_image(pixels)
    if image_format == "jpg":
        picture.save(buffer, format="JPEG", quality=jpeg_quality)
    else:
        picture.save(buffer, format="PNG")
    return buffer.getvalue()


def transferred_sample(
    content: dict[str, Any],
    style: dict[str, Any],
    image: torch.Tensor,
    steps: int,
    config: TransferConfig,
    vgg_weights_id: str,
) -> dict[str, Any]:
    """A shard sample for ``image``, the content sample transferred towards the style sample.

    Args:
        content: the natural sample (``__key__``, ``cls``, image, ``json``), raw bytes or decoded.
        style: the interventional sample it took its style from.
        image: the result (3, H, W) in [0, 1].
        steps: L-BFGS steps it ran.
        config: the transfer settings (recorded, and the output size and format).
        vgg_weights_id: ``VggFeatures.weights_id`` of the network used.

    Returns:
        ``__key__``, one of ``jpg``/``png``, ``cls`` (the content label) and ``json`` provenance;
        valid for ``shards.sample.encode_sample``.
    """
    content_key, style_key = str(content.get("__key__")), str(style.get("__key__"))
    try:
        label = int(encode_class(content.get("cls"), content_key))
    except SampleError as error:
        raise DatagenError(str(error)) from None
    provenance = {
        "stream": STREAM,
        "class": label,
        "generator": GENERATOR_ID,
        "content_key": content_key,
        "style_key": style_key,
        "steps": steps,
        "style_weight": config.style_weight,
        "content_weight": config.content_weight,
        "style_layers": list(config.style_layers),
        "content_layers": list(config.content_layers),
        "lr": config.lr,
        "optimise_size": config.optimise_size,
        "save_size": config.save_size,
        "vgg_weights": vgg_weights_id,
        "style_provenance": _provenance(style),
    }
    return {
        "__key__": transferred_key(content_key, style_key),
        config.image_format: encode_image(image, config.save_size, config.image_format, config.jpeg_quality),
        "cls": label,
        "json": provenance,
    }


def _batches(pairs: Iterable[tuple[dict, dict]], size: int) -> Iterator[list[tuple[dict, dict]]]:
    batch = []
    for pair in pairs:
        batch.append(pair)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def transfer_samples(
    pairs: Iterable[tuple[dict[str, Any], dict[str, Any]]], features: VggFeatures, config: TransferConfig
) -> Iterator[dict[str, Any]]:
    """Stage: (content sample, style sample) pairs in, transferred samples out, ``config.batch_size`` at a time.

    Each pair runs ``draw_steps`` iterations at ``config.optimise_size`` px and is saved at
    ``config.save_size`` px. Output order follows input order.
    """
    for batch in _batches(pairs, config.batch_size):
        content = torch.stack([decode_image(content, config.optimise_size) for content, _ in batch])
        style = torch.stack([decode_image(style, config.optimise_size) for _, style in batch])
        steps = [draw_steps(str(content["__key__"]), str(style["__key__"]), config) for content, style in batch]
        images = transfer_batch(content, style, steps, features, config)
        for (content_sample, style_sample), image, count in zip(batch, images, steps):
            yield transferred_sample(content_sample, style_sample, image, count, config, features.weights_id)
