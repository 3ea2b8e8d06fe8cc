"""Build an ImageNet-C style directory from any ImageFolder eval set with ``imagecorruptions``.

Layout: ``<out>/<corruption>/<severity>/<class>/<image>.jpg``, the one the ``imagenet-c`` suite
reads. As in ImageNet-C, images are resized (shorter side 256) and centre cropped (224) before
being corrupted and saved as JPEG (quality 85). Each output is written to a temp file and renamed,
so a rerun after a crash skips what exists. The noise of every (image, corruption, severity) is
seeded from their names, so a rebuild gives the same pixels.
"""

import multiprocessing
import warnings
import zlib
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from types import ModuleType

import numpy as np
import skimage.filters
import torchvision.transforms.functional as tvf
from PIL import Image
from tqdm import tqdm

from shards.classes import class_indices
from shards.files import write_durably_with
from trainers.errors import TrainError
from trainers.evaluation.loading import class_folders, image_files
from trainers.evaluation.metrics import IMAGENET_C_SEVERITIES

MIN_SIDE_PX = 32  # imagecorruptions refuses smaller images


@dataclass(frozen=True)
class CorruptionReport:
    """What a build did."""

    images: int
    written: int
    already_present: int


def _gaussian_multichannel(image: np.ndarray, sigma: float, multichannel: bool = False, **kwargs) -> np.ndarray:
    """``skimage.filters.gaussian`` accepting the ``multichannel`` flag that scikit-image 0.19 renamed."""
    return skimage.filters.gaussian(image, sigma=sigma, channel_axis=-1 if multichannel else None, **kwargs)


@cache
def imagecorruptions_module() -> ModuleType:
    """``imagecorruptions`` made to run on numpy 2 and scikit-image >= 0.19.

    Its last release (1.1.2) predates both: glass_blur and gaussian_blur pass ``multichannel=`` to
    skimage's gaussian, and fog's fractal asks numpy for ``float_``. Without these two shims those
    corruptions raise, and mCE (which needs all 15) could not be built.
    """
    with warnings.catch_warnings():
        # Its imports of pkg_resources and scipy.ndimage.interpolation warn; neither is ours to fix.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        import imagecorruptions
        from imagecorruptions import corruptions
    corruptions.gaussian = _gaussian_multichannel
    if not hasattr(np, "float_"):
        np.float_ = np.float64
    return imagecorruptions


def corruption_names() -> list[str]:
    """Every corruption ``imagecorruptions`` offers (the 15 ImageNet-C ones, then 4 held-out ones)."""
    return imagecorruptions_module().get_corruption_names("all")


def _output_path(out_dir: Path, corruption: str, severity: int, relative: Path) -> Path:
    return out_dir / corruption / str(severity) / relative.with_suffix(".jpg")


def _corrupt_one(
    relative: Path,
    source_dir: Path,
    out_dir: Path,
    corruptions: Sequence[str],
    severities: Sequence[int],
    resize_size: int | None,
    crop_size: int | None,
    jpeg_quality: int,
) -> int:
    """Write every missing corrupted version of one source image; return how many were written."""
    pending = [
        (corruption, severity)
        for corruption in corruptions
        for severity in severities
        if not _output_path(out_dir, corruption, severity, relative).exists()
    ]
    if not pending:
        return 0
    image = Image.open(source_dir / relative).convert("RGB")
    if resize_size:
        image = tvf.resize(image, resize_size)
    if crop_size:
        image = tvf.center_crop(image, crop_size)
    if min(image.size) < MIN_SIDE_PX:
        raise TrainError(f"{source_dir / relative}: {image.size} px after resize/crop, corruptions need >= {MIN_SIDE_PX} px (raise crop_size)")
    pixels = np.asarray(image)
    module = imagecorruptions_module()
    for corruption, severity in pending:
        np.random.seed(zlib.crc32(f"{relative.as_posix()}|{corruption}|{severity}".encode()))
        corrupted = module.corrupt(pixels, corruption_name=corruption, severity=severity)
        target = _output_path(out_dir, corruption, severity, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_durably_with(target, lambda file: Image.fromarray(corrupted).save(file, format="JPEG", quality=jpeg_quality))
    return len(pending)


def build_corrupted_set(
    source_dir: Path,
    out_dir: Path,
    corruptions: Sequence[str],
    severities: Sequence[int] = IMAGENET_C_SEVERITIES,
    resize_size: int | None = 256,
    crop_size: int | None = 224,
    jpeg_quality: int = 85,
    workers: int = 1,
) -> CorruptionReport:
    """Write ``<out_dir>/<corruption>/<severity>/<class>/<image>.jpg`` for every image of an ImageFolder.

    Args:
        source_dir: an ImageFolder tree (one folder per class).
        out_dir: where the corrupted tree goes; existing outputs are kept (resume).
        corruptions: names from ``corruption_names()``.
        severities: values in 1..5.
        resize_size: shorter side before cropping, or None to keep the size.
        crop_size: centre crop side, or None for no crop; images must end up >= 32 px.
        jpeg_quality: JPEG quality of the outputs.
        workers: processes corrupting images in parallel.
    Returns:
        How many source images there were, and how many outputs were written or already present.
    Raises:
        TrainError: unknown corruption, bad severity, missing or empty source, output name clash.
    """
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    known = corruption_names()
    unknown = [name for name in corruptions if name not in known]
    if unknown or not corruptions:
        raise TrainError(f"corruption {unknown[0] if unknown else '(none)'!r} is not one of: {', '.join(known)}")
    bad = [severity for severity in severities if severity not in IMAGENET_C_SEVERITIES]
    if bad or not severities:
        raise TrainError(f"corruption severity must be in 1..5 (got {bad[0] if bad else 'none'})")
    files = image_files(source_dir, class_indices(class_folders(source_dir))).files
    relatives = [path.relative_to(source_dir) for path in files]
    if len({relative.with_suffix(".jpg") for relative in relatives}) != len(relatives):
        raise TrainError(f"{source_dir}: two images differ only in extension; outputs are all .jpg, rename one")
    corrupt = partial(
        _corrupt_one,
        source_dir=source_dir,
        out_dir=out_dir,
        corruptions=list(corruptions),
        severities=list(severities),
        resize_size=resize_size,
        crop_size=crop_size,
        jpeg_quality=jpeg_quality,
    )
    # forkserver: forking a process that already runs DALI/torch threads can deadlock.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver")) if workers > 1 else None
    written = 0
    with pool or nullcontext(), tqdm(total=len(relatives), desc="corrupting", unit="image", disable=None) as progress:
        for count in pool.map(corrupt, relatives, chunksize=4) if pool else map(corrupt, relatives):
            written += count
            progress.update()
    total = len(relatives) * len(corruptions) * len(severities)
    return CorruptionReport(images=len(relatives), written=written, already_present=total - written)
