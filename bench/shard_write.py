"""Samples/s of the shard store's writer against a bare webdataset.TarWriter, in one run.

Both write the same pre-encoded JPEGs to the same disk. The store's figure includes what makes
it a store: sample validation, sha256, fsync, rename, the DALI index and the manifest append.
Runs alternate (bare, store, bare, store, ...) and the median of each is reported.

    python bench/shard_write.py [--samples 10000] [--image-size 64] [--repeats 5]
"""

import argparse
import io
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import webdataset
from PIL import Image

from shards.writer import ShardWriter


def make_samples(count: int, image_size: int) -> list[dict]:
    rng = np.random.default_rng(0)
    base = (rng.random((image_size, image_size, 3)) * 255).astype(np.uint8)
    samples = []
    for index in range(count):
        buffer = io.BytesIO()
        Image.fromarray(np.roll(base, index, axis=0)).save(buffer, format="JPEG", quality=90)
        samples.append({"__key__": f"s{index:07d}", "jpg": buffer.getvalue(), "cls": index % 1000,
                        "json": {"stream": "bench", "index": index}})
    return samples


def as_bytes(samples: list[dict]) -> list[dict]:
    """The baseline's input: every field already bytes (encoded before timing starts)."""
    return [{"__key__": s["__key__"], "jpg": s["jpg"], "cls": str(s["cls"]).encode(),
             "json": json.dumps(s["json"]).encode()} for s in samples]


def write_bare(encoded: list[dict], directory: Path, per_shard: int) -> None:
    """The baseline: TarWriter over bytes fields, rolled by count, nothing else."""
    for start in range(0, len(encoded), per_shard):
        with webdataset.TarWriter(str(directory / f"bare-{start // per_shard:06d}.tar"), encoder=False) as writer:
            for sample in encoded[start : start + per_shard]:
                writer.write(sample)


def write_store(samples: list[dict], directory: Path, per_shard: int) -> None:
    """The store, given samples as a user passes them (int label, dict provenance)."""
    with ShardWriter(directory, "bench", "w0", "bench", max_samples=per_shard) as writer:
        for sample in samples:
            writer.write(sample)


def time_once(function, samples: list[dict], per_shard: int) -> float:
    directory = Path(tempfile.mkdtemp(prefix="genint-bench-"))
    try:
        started = time.perf_counter()
        function(samples, directory, per_shard)
        return len(samples) / (time.perf_counter() - started)
    finally:
        shutil.rmtree(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--per-shard", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    samples = make_samples(args.samples, args.image_size)
    mean_kib = sum(len(s["jpg"]) for s in samples) / len(samples) / 1024
    encoded = as_bytes(samples)
    bare, store = [], []
    for _ in range(args.repeats):
        bare.append(time_once(write_bare, encoded, args.per_shard))
        store.append(time_once(write_store, samples, args.per_shard))
    bare_rate, store_rate = statistics.median(bare), statistics.median(store)
    print(f"{args.samples} samples, {args.image_size} px JPEG ({mean_kib:.1f} KiB mean), "
          f"{args.per_shard} per shard, median of {args.repeats}")
    print(f"bare webdataset.TarWriter: {bare_rate:10.0f} samples/s")
    print(f"genint ShardWriter:        {store_rate:10.0f} samples/s")
    print(f"ratio store/bare:          {store_rate / bare_rate:10.3f}  (goal >= 0.9)")


if __name__ == "__main__":
    main()
