"""Growing streams: following the manifest (external_source) against rebuilding the reader per window.

The trainer follows a growing stream by polling its manifest and feeding new shards' samples to
DALI through ``external_source``; the alternative is to rebuild DALI's webdataset reader over the
committed shards each time new ones arrive. Measured in one run on the same shards:

1. images/s of the growing source against the static (webdataset reader) source, steady state;
2. what one rebuild costs: building a static source over the committed shards up to its first
   batch, i.e. what the rebuild design pays for every window of new shards.

    .venv/bin/python -m bench.growing [--images 2048] [--image-size 128] [--batches 24]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.loader import write_shards
from trainers.config import StreamConfig
from trainers.data.config import LoaderConfig
from trainers.data.source import build_batch_source


def images_per_s(stream_dir: Path, loader: LoaderConfig, batch_size: int, batches: int, growing: bool) -> float:
    source = build_batch_source("bench", stream_dir, StreamConfig(batch_size=batch_size, when_short="reuse"),
                                loader, 0, 1, "cpu", 0, growing=growing)
    source.next_batch()  # warm-up
    start = time.perf_counter()
    for _ in range(batches):
        source.next_batch()
    elapsed = time.perf_counter() - start
    source.close()
    return batches * batch_size / elapsed


def rebuild_seconds(stream_dir: Path, loader: LoaderConfig, batch_size: int) -> float:
    start = time.perf_counter()
    source = build_batch_source("bench", stream_dir, StreamConfig(batch_size=batch_size), loader, 0, 1, "cpu", 0, growing=False)
    source.next_batch()
    elapsed = time.perf_counter() - start
    source.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--crop-size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    loader = LoaderConfig(crop_size=args.crop_size, resize_size=args.image_size, num_threads=2)
    with tempfile.TemporaryDirectory() as temporary:
        stream_dir = Path(temporary) / "bench"
        write_shards(stream_dir, args.images, args.image_size)
        rates = {"static": [], "growing": []}
        for _ in range(args.repeats):
            for name in rates:
                rates[name].append(images_per_s(stream_dir, loader, args.batch_size, args.batches, growing=name == "growing"))
        rebuild = statistics.median(rebuild_seconds(stream_dir, loader, args.batch_size) for _ in range(args.repeats))
    static, growing = statistics.median(rates["static"]), statistics.median(rates["growing"])
    print(f"{args.images} images, {args.image_size} px, crop {args.crop_size}, batch {args.batch_size}, median of {args.repeats}")
    print(f"  static reader (fn.readers.webdataset)   {static:8.1f} images/s")
    print(f"  growing (manifest + external_source)    {growing:8.1f} images/s   ratio {growing / static:.2f}")
    print(f"  one reader rebuild up to its first batch {rebuild:7.2f} s  (= {rebuild * static:.0f} images of reading lost per window)")


if __name__ == "__main__":
    main()
