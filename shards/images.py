"""A stream's samples decoded into arrays, for consumers that hold a whole small stream in memory
(the CVAE's training set, the correlation analysis). Trainers read through DALI instead; this reads with PIL.

The stream gets the reader checks of a one-off read (``check_committed_shards``): a damaged or
duplicated shard is refused, never read.
"""

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from shards.errors import SampleError, ShardError
from shards.reader import check_committed_shards, iter_samples
from shards.sample import IMAGE_EXTENSIONS, decode_class

# PIL's own refusals of a file that is not a decodable image (a bomb is an error, not an OSError).
_UNDECODABLE = (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError)


def _where(sample: dict) -> str:
    return f"{Path(sample.get('__url__', '?')).name}: sample {sample.get('__key__')}"


def _decode_image(sample: dict, image_size: int) -> np.ndarray:
    """uint8 (3, image_size, image_size) RGB from the sample's jpg or png bytes."""
    data = next((sample[extension] for extension in IMAGE_EXTENSIONS if extension in sample), None)
    if data is None:
        raise SampleError(f"{_where(sample)}: no {' or '.join(IMAGE_EXTENSIONS)} field")
    try:
        with Image.open(io.BytesIO(data)) as image:
            rgb = image.convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR)
    except _UNDECODABLE as error:
        raise SampleError(f"{_where(sample)}: undecodable image ({error})") from None
    return np.asarray(rgb).transpose(2, 0, 1)


def _decode_label(sample: dict) -> int:
    try:
        return decode_class(sample.get("cls", b""), sample.get("__key__"))
    except SampleError as error:
        raise SampleError(f"{Path(sample.get('__url__', '?')).name}: {error}") from None


def _decode_provenance(sample: dict) -> dict:
    """The sample's ``json`` field: a JSON object (the contract's provenance record)."""
    try:
        record = json.loads(sample.get("json", b""))
    except ValueError as error:
        raise SampleError(f"{_where(sample)}: json field is not valid JSON ({error})") from None
    if not isinstance(record, dict):
        raise SampleError(f"{_where(sample)}: json field must be a JSON object (got {type(record).__name__})")
    return record


@dataclass(frozen=True)
class StreamSamples:
    """A whole stream in commit order: uint8 (N, 3, S, S) images, int64 (N,) labels, and each
    sample's key and provenance record (the ``json`` field)."""

    images: np.ndarray
    labels: np.ndarray
    keys: list[str]
    provenance: list[dict]


def _read_stream(stream_dir: Path, image_size: int, with_provenance: bool) -> StreamSamples:
    stream_dir = Path(stream_dir)
    intact, damaged = check_committed_shards(stream_dir)
    if damaged:
        raise ShardError(f"{len(damaged)} damaged shards, first {damaged[0].reason}")
    pixels, labels, keys, provenance = [], [], [], []
    try:
        for sample in iter_samples([path for path, _ in intact]):
            pixels.append(_decode_image(sample, image_size))
            labels.append(_decode_label(sample))
            keys.append(sample.get("__key__"))
            if with_provenance:
                provenance.append(_decode_provenance(sample))
    except (tarfile.TarError, OSError, ValueError) as error:
        # webdataset appends the stream and url to an exception's args; the first arg is the reason.
        reason = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
        raise ShardError(f"{stream_dir}: unreadable shard ({type(error).__name__}: {reason})") from None
    if not pixels:
        return StreamSamples(np.zeros((0, 3, image_size, image_size), np.uint8), np.zeros(0, np.int64), [], [])
    return StreamSamples(np.stack(pixels), np.array(labels, dtype=np.int64), keys, provenance)


def read_stream_images(stream_dir: Path, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Every committed sample of a stream, in commit order, decoded to RGB and resized (bilinear).

    Args:
        stream_dir: the stream's directory (its manifest lists the shards).
        image_size: side of the square images returned, in pixels.

    Returns:
        images: uint8 (N, 3, image_size, image_size); labels: int64 (N,) from ``cls``. N is 0 for a
        stream with no committed samples (or no manifest).

    Raises:
        ShardError: one line: a damaged shard (naming the first and how many), an unreadable tar,
            or a sample whose image or ``cls`` cannot be decoded (naming its shard and key).
    """
    samples = _read_stream(stream_dir, image_size, with_provenance=False)
    return samples.images, samples.labels


def read_stream_samples(stream_dir: Path, image_size: int) -> StreamSamples:
    """As ``read_stream_images``, with each sample's key and provenance record (what a generated
    sample records: class, seed, truncation, components, offsets, generator, direction hash).

    Raises:
        ShardError: as ``read_stream_images``, or a sample whose ``json`` is not a JSON object.
    """
    return _read_stream(stream_dir, image_size, with_provenance=True)
