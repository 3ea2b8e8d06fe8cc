"""Samples/s of DALI's webdataset reader + CPU decode over the same shards on SeaweedFS and local disk.

The store writes the shards once to a local directory and once to ``--root`` (an ``s3://`` prefix;
endpoint and keys from the AWS variables), same samples, same shard sizes. Each run builds a
pipeline (the reader with the shards' DALI indexes, beside the tars on each backend, then
``fn.decoders.image`` and a resize) and reads ``--epochs`` epochs; runs alternate local, s3, ...
and the median of each is reported. What it writes to the bucket it deletes at the end.

A third figure, "staged", copies the bucket's shards to a local scratch directory with boto3
(``--stage-threads`` objects at once, each by parallel ranged GETs past boto3's multipart
threshold) and then reads them there: the copy is inside the timed region. DALI 2.4's
own S3 path issues small requests per sample (NVIDIA/DALI#5551 reports the same for TFRecords),
which a loopback server answers at a few hundred a second, so staging is the fast path today.

    python bench/dali_s3_read.py --root s3://BUCKET/PREFIX [--samples 4096] [--repeats 3]
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nvidia.dali import fn, pipeline_def

from bench.shard_write import make_samples
from shards.storage import S3Store, S3Url
from shards.stores import check_committed_shards, open_manifest
from shards.writer import ShardWriter

BATCH = 64


def write(stream_dir: "Path | str", samples: list[dict], per_shard: int) -> None:
    with ShardWriter(stream_dir, "bench", "w0", "bench", max_samples=per_shard) as writer:
        for sample in samples:
            writer.write(sample)


def read_rate(stream_dir: "Path | str", total: int, epochs: int, threads: int) -> float:
    """Samples/s of ``epochs`` epochs through reader + decode, pipeline build included."""
    shards = [path for path, _ in check_committed_shards(stream_dir)[0]]
    started = time.perf_counter()

    @pipeline_def(batch_size=BATCH, num_threads=threads, device_id=None, prefetch_queue_depth=2)
    def pipeline():
        image, label = fn.readers.webdataset(paths=[str(path) for path in shards],
                                             index_paths=[str(path.with_name(path.name.replace(".tar", ".idx"))) for path in shards],
                                             ext=["jpg", "cls"], name="reader")
        return fn.resize(fn.decoders.image(image, device="cpu"), resize_x=32, resize_y=32), label

    pipe = pipeline()
    pipe.build()
    batches = epochs * -(-total // BATCH)
    for _ in range(batches):
        pipe.run()
    return batches * BATCH / (time.perf_counter() - started)


def staged_rate(stream_dir: str, total: int, epochs: int, threads: int, stage_threads: int) -> float:
    """Samples/s of copying the committed shards and indexes to scratch, then reading them locally."""
    scratch = Path(tempfile.mkdtemp(prefix="genint-stage-"))
    try:
        started = time.perf_counter()
        store = S3Store(S3Url.parse(stream_dir))
        keys = [key for key, _ in store.list("") if "/" not in key]
        store.client  # one boto3 client, made before the threads share it (clients are thread-safe; their creation is not)
        with ThreadPoolExecutor(stage_threads) as pool:
            list(pool.map(lambda key: store.download(key, scratch / key, "shard object"), keys))
        (scratch / "manifest.jsonl").write_bytes(b"".join(r.to_line() for r in open_manifest(stream_dir).records()))
        copy_s = time.perf_counter() - started
        read_s = batches_s(scratch, total, epochs, threads)
        return epochs * -(-total // BATCH) * BATCH / (copy_s + read_s)
    finally:
        shutil.rmtree(scratch)


def batches_s(stream_dir: "Path | str", total: int, epochs: int, threads: int) -> float:
    return epochs * -(-total // BATCH) * BATCH / read_rate(stream_dir, total, epochs, threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="s3://BUCKET/PREFIX")
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--per-shard", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stage-threads", type=int, default=8, help="objects copied at once by the staged run")
    args = parser.parse_args()
    samples = make_samples(args.samples, args.image_size)
    local_dir = Path(tempfile.mkdtemp(prefix="genint-bench-")) / "bench"
    remote = S3Url.parse(args.root).join(f"bench-{os.getpid()}", "bench")
    try:
        write(local_dir, samples, args.per_shard)
        write(str(remote), samples, args.per_shard)
        local, s3, staged = [], [], []
        for _ in range(args.repeats):
            local.append(read_rate(local_dir, args.samples, args.epochs, args.threads))
            s3.append(read_rate(str(remote), args.samples, args.epochs, args.threads))
            staged.append(staged_rate(str(remote), args.samples, args.epochs, args.threads, args.stage_threads))
    finally:
        shutil.rmtree(local_dir.parent)
        store = S3Store(remote)
        for key, _ in list(store.list("")):
            store.delete(key)
    local_rate, s3_rate, staged_rate_ = statistics.median(local), statistics.median(s3), statistics.median(staged)
    print(f"{args.samples} samples, {args.image_size} px JPEG, {args.per_shard} per shard, {args.epochs} epochs, "
          f"{args.threads} DALI threads, median of {args.repeats}")
    print(f"DALI from local disk: {local_rate:10.0f} samples/s")
    print(f"DALI from {args.root}: {s3_rate:10.0f} samples/s")
    print(f"staged to scratch ({args.stage_threads} objects at once), then DALI: {staged_rate_:10.0f} samples/s (copy included)")
    print(f"ratio s3/local:       {s3_rate / local_rate:10.3f}  (goal >= 0.8)")
    print(f"ratio staged/local:   {staged_rate_ / local_rate:10.3f}")
    print(f"result: local_samples_per_s={local_rate:.0f} s3_samples_per_s={s3_rate:.0f} staged_samples_per_s={staged_rate_:.0f} "
          f"ratio={s3_rate / local_rate:.3f} staged_ratio={staged_rate_ / local_rate:.3f}")


if __name__ == "__main__":
    main()
