"""Images/s of the DALI CPU loader against a torchvision DataLoader on the same shards.

Both read the same WebDataset shards (written by the real ShardWriter), decode JPEGs, apply a
random-resized crop, a horizontal flip and normalisation, and batch to float NCHW tensors; DALI
with ``--workers`` threads, the baseline with ``--workers`` DataLoader processes (PIL decode).
Goal (issue 4): ratio >= 1.5.

    .venv/bin/python bench/loader.py [--images 2048] [--image-size 256] [--crop-size 224]
"""

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import webdataset
from PIL import Image
from torchvision import transforms

from shards.reader import committed_shards
from shards.writer import ShardWriter
from trainers.config import StreamConfig
from trainers.data.config import LoaderConfig
from trainers.data.source import build_batch_source


def write_shards(stream_dir: Path, images: int, image_size: int) -> None:
    """Photo-like JPEGs (smooth gradients plus noise, quality 90), 256 per shard."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, image_size)
    with ShardWriter(stream_dir, "bench", "w0", "bench", max_samples=256) as writer:
        for index in range(images):
            colour = rng.random(3)
            base = np.outer(ramp, ramp[::-1])[..., None] * colour * 255
            pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
            writer.write({"__key__": f"b{index:06d}", "jpg": buffer.getvalue(), "cls": index % 10, "json": {}})


def dali_images_per_s(stream_dir: Path, loader: LoaderConfig, batch_size: int, batches: int) -> float:
    source = build_batch_source("bench", stream_dir, StreamConfig(batch_size=batch_size), loader,
                                0, 1, "cpu", 0, growing=False)
    source.next_batch()  # warm-up: pipeline start and first fill of the shuffle buffer
    start = time.perf_counter()
    for _ in range(batches):
        batch = source.next_batch()
    elapsed = time.perf_counter() - start
    assert batch.images.shape[0] == batch_size
    source.close()
    return batches * batch_size / elapsed


def torchvision_images_per_s(stream_dir: Path, loader: LoaderConfig, batch_size: int, batches: int, workers: int) -> float:
    transform = transforms.Compose([
        transforms.RandomResizedCrop(loader.crop_size, scale=loader.crop_area),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(loader.mean, loader.std),
    ])
    dataset = (
        webdataset.WebDataset([str(path) for path, _ in committed_shards(stream_dir)], shardshuffle=100,
                              nodesplitter=webdataset.split_by_node, empty_check=False)
        .repeat()
        .shuffle(loader.shuffle_buffer)
        .decode("pil")
        .to_tuple("jpg", "cls")
        .map_tuple(transform, int)
        .batched(batch_size, partial=False)
    )
    data = iter(torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers, persistent_workers=False))
    next(data)  # warm-up: worker start
    start = time.perf_counter()
    for _ in range(batches):
        images, _ = next(data)
    elapsed = time.perf_counter() - start
    assert images.shape[0] == batch_size
    return batches * batch_size / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--crop-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    loader = LoaderConfig(crop_size=args.crop_size, resize_size=max(args.crop_size, 256), num_threads=args.workers)
    with tempfile.TemporaryDirectory() as temp:
        stream_dir = Path(temp) / "bench"
        write_shards(stream_dir, args.images, args.image_size)
        baseline = torchvision_images_per_s(stream_dir, loader, args.batch_size, args.batches, args.workers)
        dali = dali_images_per_s(stream_dir, loader, args.batch_size, args.batches)
    print(f"images {args.images} x {args.image_size} px JPEG, crop {args.crop_size}, batch {args.batch_size}, "
          f"{args.batches} timed batches, {args.workers} workers/threads")
    print(f"torchvision DataLoader (PIL): {baseline:8.1f} images/s")
    print(f"DALI CPU loader:              {dali:8.1f} images/s")
    print(f"ratio DALI / torchvision:     {dali / baseline:8.2f}")


if __name__ == "__main__":
    main()
