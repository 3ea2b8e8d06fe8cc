"""A stream's samples decoded into arrays, for consumers that hold a whole small stream in memory
(the CVAE's training set). Trainers read through DALI instead; this reads with PIL.

The stream gets the reader checks of a one-off read (``check_committed_shards``): a damaged or
duplicated shard is refused, never read.
"""

import io
import tarfile
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
    stream_dir = Path(stream_dir)
    intact, damaged = check_committed_shards(stream_dir)
    if damaged:
        raise ShardError(f"{len(damaged)} damaged shards, first {damaged[0].reason}")
    pixels, labels = [], []
    try:
        for sample in iter_samples([path for path, _ in intact]):
            pixels.append(_decode_image(sample, image_size))
            labels.append(_decode_label(sample))
    except (tarfile.TarError, OSError, ValueError) as error:
        # webdataset appends the stream and url to an exception's args; the first arg is the reason.
        reason = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
        raise ShardError(f"{stream_dir}: unreadable shard ({type(error).__name__}: {reason})") from None
    if not pixels:
        return np.zeros((0, 3, image_size, image_size), np.uint8), np.zeros(0, np.int64)
    return np.stack(pixels), np.array(labels, dtype=np.int64)
