"""Reading eval sets with DALI: image folders and committed shard streams, in a fixed order.

Folders go through ``fn.readers.file`` with their labels, shard streams through
``fn.readers.webdataset`` with the committed shards of their manifests (never a directory
listing). Decoding is ``mixed`` on CUDA and CPU otherwise; the rest of the graph is the same.
"""

import bisect
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.pipeline import DataNode
from nvidia.dali.plugin.pytorch import feed_ndarray

from shards.errors import ShardError
from shards.locations import S3Url, stream_location
from shards.names import index_file_name
from shards.stores import check_committed_shards, stream_locations
from trainers.data.augment import decoder_device, eval_transform
from trainers.data.decode import UNREADABLE_LABEL, read_label
from trainers.errors import TrainError
from trainers.evaluation.config import EvalConfig

# Formats DALI's image decoder reads; other files in a class folder are not images to score.
DECODABLE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jp2"})
_READER = "reader"


@dataclass(frozen=True)
class ImageFiles:
    """Image files of a folder tree, each with its label."""

    root: Path
    files: list[Path]
    labels: list[int]

    @property
    def samples(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class ShardFiles:
    """The committed shards of one or more shard streams; labels come from each sample's ``cls``."""

    root: Path | S3Url
    shards: list[Path]  # what DALI reads: the stream's own files, or this node's copies of a bucket's (shards.s3_staging)
    shard_samples: list[int]
    shard_names: list[str]  # each shard as messages name it: its path or its object's URL

    @property
    def samples(self) -> int:
        return sum(self.shard_samples)


def class_folders(root: Path, expected: str = "one subdirectory per class") -> list[str]:
    """Sorted names of the subdirectories of ``root`` (``expected`` says what they are, for messages).

    Raises:
        TrainError: if ``root`` is not a directory or has no subdirectories.
    """
    if not root.is_dir():
        raise TrainError(f"{root}: eval data directory does not exist (expected {expected})")
    folders = sorted(path.name for path in root.iterdir() if path.is_dir())
    if not folders:
        raise TrainError(f"{root}: no subdirectories (expected {expected})")
    return folders


def image_files(root: Path, folder_labels: Mapping[str, int]) -> ImageFiles:
    """The decodable images under each named folder of ``root`` (recursively, sorted), labelled.

    Args:
        root: the tree's top directory.
        folder_labels: class folder name -> label; folders not named here are not read.
    Raises:
        TrainError: if the folders hold no image at all.
    """
    files: list[Path] = []
    labels: list[int] = []
    for folder, label in sorted(folder_labels.items()):
        found = sorted(p for p in (root / folder).rglob("*") if p.is_file() and p.suffix.lower() in DECODABLE_SUFFIXES)
        files += found
        labels += [label] * len(found)
    if not files:
        raise TrainError(f"{root}: no images in its class folders (readable: {', '.join(sorted(DECODABLE_SUFFIXES))})")
    return ImageFiles(root, files, labels)


def shard_files(root: "Path | S3Url | str") -> ShardFiles:
    """The committed shards of the stream at ``root`` (or of every stream directory under it), a
    directory or an ``s3://`` prefix (whose shards are copied to this node first: ``shards.s3_staging``).

    Raises:
        TrainError: if there is no manifest, a committed shard fails the store's reader checks
            (``shards.reader.check_shard``: the checks verify makes, without the hash), or nothing is committed.
    """
    committed = []
    root = stream_location(root)
    try:
        for stream in stream_locations(root):
            intact, damaged = check_committed_shards(stream, stage=True)
            if damaged:
                raise TrainError(f"eval shards: {damaged[0].reason}; not scored (run genint shards verify)")
            committed += [(path, record.samples, str(stream / record.name)) for path, record in intact if record.samples]
    except ShardError as error:
        raise TrainError(f"eval shards: {error}") from None
    if not committed:
        raise TrainError(f"{root}: the manifest lists no committed samples")
    return ShardFiles(root, *map(list, zip(*committed)))


def _decode(encoded: DataNode, decode_device: str, border_px: int) -> DataNode:
    """Decode to RGB, cutting ``border_px`` pixels off every side when asked."""
    images = fn.decoders.image(encoded, device=decode_device, output_type=types.RGB)
    if border_px:
        # The crop size comes from the encoded header so the same graph serves CPU and mixed decode.
        shape = fn.peek_image_shape(encoded)
        images = fn.crop(
            images,
            crop_h=fn.cast(shape[0] - 2 * border_px, dtype=types.FLOAT),
            crop_w=fn.cast(shape[1] - 2 * border_px, dtype=types.FLOAT),
        )
    return images


def _read(source: ImageFiles | ShardFiles) -> tuple[DataNode, DataNode]:
    if isinstance(source, ImageFiles):
        return fn.readers.file(
            files=[str(path) for path in source.files],
            labels=source.labels,
            random_shuffle=False,
            pad_last_batch=True,
            name=_READER,
        )
    return tuple(fn.readers.webdataset(
        paths=[str(path) for path in source.shards],
        index_paths=[str(path.with_name(index_file_name(path.name))) for path in source.shards],
        ext=["jpg;png", "cls"],
        missing_component_behavior="error",
        random_shuffle=False,
        pad_last_batch=True,
        name=_READER,
    ))


def _shard_labels(outputs, root: Path) -> torch.Tensor:
    labels = [read_label(np.asarray(outputs.at(i)).tobytes(), str(root)) for i in range(len(outputs))]
    if UNREADABLE_LABEL in labels:
        raise TrainError(f"{root}: a sample's cls is not a class index (ASCII decimal); run genint shards verify on it")
    return torch.tensor(labels, dtype=torch.int64)


def _labels(outputs, source: ImageFiles | ShardFiles) -> torch.Tensor:
    if isinstance(source, ShardFiles):
        return _shard_labels(outputs, source.root)
    return torch.from_numpy(np.asarray(outputs.as_tensor()).reshape(-1).astype(np.int64))


def eval_batches(
    source: ImageFiles | ShardFiles, config: EvalConfig, device: torch.device, border_px: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Every sample of ``source`` once, in order, as (images, labels) batches on ``device``.

    Args:
        source: the files or shards to read.
        config: batch size, and the loader's transform sizes, normalisation and threads.
        device: where the batches go; CUDA decodes with nvJPEG (``mixed``).
        border_px: pixels to cut from each side before resizing.
    Yields:
        Normalised float images (N, 3, crop, crop) and int64 labels (N,); the last batch may be short.
    Raises:
        TrainError: if DALI cannot read or decode the data.
    """
    on_cuda = device.type == "cuda"
    device_id = (device.index if device.index is not None else torch.cuda.current_device()) if on_cuda else None

    @pipeline_def(batch_size=config.batch_size, num_threads=config.loader.num_threads, device_id=device_id)
    def pipeline():
        encoded, labels = _read(source)
        images = _decode(encoded, decoder_device(device.type), border_px)
        return eval_transform(images, config.loader), labels

    pipe = pipeline()
    pipe.build()
    total = pipe.epoch_size(_READER)
    for start in range(0, total, config.batch_size):
        try:
            images, labels = pipe.run()
        except RuntimeError as error:
            raise TrainError(f"{source.root}: DALI failed on samples {start}..{start + config.batch_size - 1} "
                             f"(first: {_sample_name(source, start)}): {_dali_cause(error)}") from None
        count = min(total - start, config.batch_size)
        # Copied out now: DALI reuses its output buffers on the next run.
        dense = images.as_tensor()
        batch = torch.empty(dense.shape(), dtype=torch.float32, device=device)
        feed_ndarray(dense, batch, cuda_stream=torch.cuda.current_stream() if on_cuda else None)
        yield batch[:count], _labels(labels, source)[:count].to(device)


def _dali_cause(error: RuntimeError) -> str:
    """The line of a DALI pipeline error that says what went wrong (it follows ``encountered:``)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    after = lines.index("encountered:") + 1 if "encountered:" in lines else 0
    return lines[after] if after < len(lines) else "unknown DALI error"


def _sample_name(source: ImageFiles | ShardFiles, position: int) -> str:
    if isinstance(source, ImageFiles):
        return str(source.files[position])
    ends = list(itertools.accumulate(source.shard_samples))
    shard = bisect.bisect_right(ends, position)
    return f"{source.shard_names[shard]} sample {position - (ends[shard - 1] if shard else 0)}"
