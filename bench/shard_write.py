"""Samples/s of the shard store's writer against a bare webdataset.TarWriter, in one run.

Both write the same pre-encoded JPEGs to the same disk. The store's figure includes what makes
it a store: sample validation, sha256, fsync, rename, the DALI index and the manifest append.
Runs alternate (bare, store, bare, store, ...) and the median of each is reported.

With ``--root s3://BUCKET/PREFIX`` (endpoint and keys from the AWS variables) the store writes to
the bucket (spool, sha256, upload of tar and index, a conditional-put manifest segment), and the
baseline is the same bare TarWriter followed by a plain boto3 ``upload_file`` of each tar as it
closes. Every run writes under its own ``PREFIX/bench-<pid>-<n>/`` and deletes what it wrote.

    python bench/shard_write.py [--samples 10000] [--image-size 64] [--repeats 5] [--root s3://...]
"""

import argparse
import io
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import webdataset
from PIL import Image

from shards.locations import is_s3_url
from shards.storage import S3Store, S3Url
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


def upload_bare(encoded: list[dict], directory: Path, per_shard: int, target: S3Store) -> None:
    """The object-store baseline: the bare tars, each uploaded with boto3 as soon as it is closed."""
    for start in range(0, len(encoded), per_shard):
        path = directory / f"bare-{start // per_shard:06d}.tar"
        with webdataset.TarWriter(str(path), encoder=False) as writer:
            for sample in encoded[start : start + per_shard]:
                writer.write(sample)
        target.upload(path, path.name)
        path.unlink()


def write_store(samples: list[dict], directory: "Path | str", per_shard: int) -> None:
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


def time_on_bucket(function, samples: list[dict], per_shard: int, root: S3Url, run: int, bare: bool) -> float:
    """Samples/s of one run under its own prefix of the bucket, whose objects are deleted after."""
    prefix = root.join(f"bench-{os.getpid()}-{run}")
    store = S3Store(prefix)
    spool = Path(tempfile.mkdtemp(prefix="genint-bench-"))
    try:
        started = time.perf_counter()
        if bare:
            function(samples, spool, per_shard, store)
        else:
            function(samples, str(prefix), per_shard)
        return len(samples) / (time.perf_counter() - started)
    finally:
        shutil.rmtree(spool)
        for key, _ in list(store.list("")):
            store.delete(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--per-shard", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--root", default=None, help="s3://BUCKET/PREFIX to write to instead of a local temp dir")
    args = parser.parse_args()
    samples = make_samples(args.samples, args.image_size)
    mean_kib = sum(len(s["jpg"]) for s in samples) / len(samples) / 1024
    encoded = as_bytes(samples)
    bare, store = [], []
    on_bucket = is_s3_url(args.root)
    if args.root is not None and not on_bucket:
        parser.error(f"--root must be an s3:// URL (got {args.root!r}); without it the bench writes to a local temp dir")
    for run in range(args.repeats):
        if on_bucket:
            root = S3Url.parse(args.root)
            bare.append(time_on_bucket(upload_bare, encoded, args.per_shard, root, 2 * run, bare=True))
            store.append(time_on_bucket(write_store, samples, args.per_shard, root, 2 * run + 1, bare=False))
        else:
            bare.append(time_once(write_bare, encoded, args.per_shard))
            store.append(time_once(write_store, samples, args.per_shard))
    bare_rate, store_rate = statistics.median(bare), statistics.median(store)
    goal = 0.8 if on_bucket else 0.9
    print(f"{args.samples} samples, {args.image_size} px JPEG ({mean_kib:.1f} KiB mean), "
          f"{args.per_shard} per shard, median of {args.repeats}, {'on ' + args.root if on_bucket else 'local disk'}")
    print(f"bare webdataset.TarWriter{' + boto3 upload' if on_bucket else ''}: {bare_rate:10.0f} samples/s")
    print(f"genint ShardWriter:        {store_rate:10.0f} samples/s")
    print(f"ratio store/bare:          {store_rate / bare_rate:10.3f}  (goal >= {goal})")
    print(f"result: backend={'s3' if on_bucket else 'local'} store_samples_per_s={store_rate:.0f} "
          f"bare_samples_per_s={bare_rate:.0f} ratio={store_rate / bare_rate:.3f}")


if __name__ == "__main__":
    main()
