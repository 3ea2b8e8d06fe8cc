"""Evaluation data path: DALI eval batches against torchvision's ImageFolder, and ImageNet-C build cost.

1. Images/s of ``trainers.evaluation.loading.eval_batches`` (DALI file reader, decode, resize
   shorter side, centre crop, normalise to float NCHW) against a torchvision ``DataLoader`` over
   ``ImageFolder`` with the same transform (PIL), as many workers as DALI threads, on the same
   JPEG folder. Alternating runs, median reported.
2. Images/s of building one ImageNet-C subset per corruption (``build_corrupted_set``: load,
   resize, crop, corrupt, JPEG save) against the same build with no corruption work
   (``--corruptions`` subset of names; default all 15 at severity 3).

    python bench/eval_loading.py [--images 512] [--threads 2] [--repeats 3] [--corrupt-images 8]
"""

import argparse
import io
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms

from trainers.data.config import LoaderConfig
from trainers.evaluation import EvalConfig
from trainers.evaluation.corruptions import build_corrupted_set, imagecorruptions_module
from trainers.evaluation.loading import eval_batches, image_files
from trainers.evaluation.suites import alexnet_corruption_errors


def write_jpegs(root: Path, count: int, classes: int = 10) -> None:
    """ImageNet-like JPEGs (about 400x320, quality 90) in ``classes`` folders."""
    rng = np.random.default_rng(0)
    base = (rng.random((320, 400, 3)) * 255).astype(np.uint8)
    for index in range(count):
        folder = root / f"class{index % classes:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        Image.fromarray(np.roll(base, index * 7, axis=1)).save(buffer, format="JPEG", quality=90)
        (folder / f"{index:06d}.jpg").write_bytes(buffer.getvalue())


def time_dali(root: Path, config: EvalConfig) -> float:
    source = image_files(root, {folder.name: i for i, folder in enumerate(sorted(root.iterdir()))})
    start = time.perf_counter()
    seen = sum(images.shape[0] for images, _ in eval_batches(source, config, torch.device("cpu")))
    return seen / (time.perf_counter() - start)


def time_torchvision(root: Path, config: EvalConfig) -> float:
    loader = config.loader
    transform = transforms.Compose([
        transforms.Resize(loader.resize_size),
        transforms.CenterCrop(loader.crop_size),
        transforms.ToTensor(),
        transforms.Normalize(loader.mean, loader.std),
    ])
    dataset = torchvision.datasets.ImageFolder(str(root), transform=transform)
    batches = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, num_workers=loader.num_threads)
    start = time.perf_counter()
    seen = sum(images.shape[0] for images, _ in batches)
    return seen / (time.perf_counter() - start)


def time_corruptions(root: Path, corruptions: list[str], severity: int) -> dict[str, float]:
    """Images/s per corruption for building one subset serially; key '' is the no-corruption baseline."""
    files = image_files(root, {folder.name: i for i, folder in enumerate(sorted(root.iterdir()))}).files
    relatives = [path.relative_to(root) for path in files]
    imagecorruptions_module()  # import once outside the timings
    rates = {}
    for corruption in ["", *corruptions]:
        out = Path(tempfile.mkdtemp(prefix="genint-bench-c-"))
        start = time.perf_counter()
        if corruption:
            build_corrupted_set(root, out, [corruption], [severity])
        else:
            for relative in relatives:  # the builder's load/resize/crop/save, without corrupting
                image = Image.open(root / relative).convert("RGB")
                image = transforms.functional.center_crop(transforms.functional.resize(image, 256), 224)
                image.save(out / f"{relative.stem}.jpg", format="JPEG", quality=85)
        rates[corruption] = len(relatives) / (time.perf_counter() - start)
        shutil.rmtree(out)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--corrupt-images", type=int, default=8)
    parser.add_argument("--corruptions", nargs="*", default=list(alexnet_corruption_errors()))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = EvalConfig(loader=LoaderConfig(num_threads=args.threads), batch_size=args.batch_size)
    work = Path(tempfile.mkdtemp(prefix="genint-bench-eval-"))
    try:
        write_jpegs(work / "val", args.images)
        time_dali(work / "val", config)  # warm-up: page cache, DALI plugin loading
        dali, baseline = [], []
        for _ in range(args.repeats):
            baseline.append(time_torchvision(work / "val", config))
            dali.append(time_dali(work / "val", config))
        dali_rate, baseline_rate = statistics.median(dali), statistics.median(baseline)
        print(f"eval loading, {args.images} JPEGs 400x320 -> 224, batch {args.batch_size}, {args.threads} threads/workers")
        print(f"  torchvision ImageFolder+DataLoader: {baseline_rate:8.1f} images/s")
        print(f"  DALI eval_batches:                  {dali_rate:8.1f} images/s   ratio {dali_rate / baseline_rate:.2f}")

        if args.corrupt_images and args.corruptions:
            write_jpegs(work / "small", args.corrupt_images, classes=2)
            rates = time_corruptions(work / "small", args.corruptions, severity=3)
            print(f"ImageNet-C build, {args.corrupt_images} images, severity 3, 1 process (baseline: no corruption)")
            print(f"  {'load+crop+save only':20s} {rates.pop(''):8.1f} images/s")
            for corruption, rate in sorted(rates.items(), key=lambda item: item[1]):
                print(f"  {corruption:20s} {rate:8.1f} images/s")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
