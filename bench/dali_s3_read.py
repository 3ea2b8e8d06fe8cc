"""Samples/s of DALI's webdataset reader + CPU decode over the same shards on SeaweedFS and local disk.

The store writes the shards once to a local directory and once to ``--root`` (an ``s3://`` prefix;
endpoint and keys from the AWS variables), same samples, same shard sizes. Each run builds a
pipeline (the reader with the shards' DALI indexes, beside the tars on each backend, then
``fn.decoders.image`` and a resize) and reads ``--epochs`` epochs; runs alternate local, s3, ...
and the median of each is reported. What it writes to the bucket it deletes at the end.

A third figure, "staged", is the trainers' and evaluation's own path for a bucket's static stream:
``check_committed_shards(..., stage=True)`` copies the committed shards (tar and index, whole, several
at once; ``shards.s3_staging``) to this node, and DALI reads the copies. Every run is timed from
its reader's start, the manifest and the shard checks included, to its last batch; each staged run
starts with no copies, so it downloads everything inside its timing. DALI 2.4's own S3 path issues
small requests per sample (NVIDIA/DALI#5551 reports the same for TFRecords), which a loopback
server answers at a few hundred a second.

    python -m bench.dali_s3_read --root s3://BUCKET/PREFIX [--samples 4096] [--repeats 3]   # from the repository root
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from nvidia.dali import fn, pipeline_def

from bench.shard_write import make_samples
from shards.names import index_file_name
from shards.s3_staging import staging_dir
from shards.storage import PARALLEL_REQUESTS, S3Store, S3Url
from shards.stores import check_committed_shards
from shards.writer import ShardWriter

BATCH = 64


def write(stream_dir: "Path | str", samples: list[dict], per_shard: int) -> None:
    with ShardWriter(stream_dir, "bench", "w0", "bench", max_samples=per_shard) as writer:
        for sample in samples:
            writer.write(sample)


def read_rate(stream_dir: "Path | str", total: int, epochs: int, threads: int, stage: bool = False) -> float:
    """Samples/s of ``epochs`` epochs through reader + decode, from the reader's shard checks (and copies) on."""
    started = time.perf_counter()
    shards = [path for path, _ in check_committed_shards(stream_dir, stage=stage)[0]]

    @pipeline_def(batch_size=BATCH, num_threads=threads, device_id=None, prefetch_queue_depth=2)
    def pipeline():
        image, label = fn.readers.webdataset(paths=[str(path) for path in shards],
                                             index_paths=[str(path.with_name(index_file_name(path.name))) for path in shards],
                                             ext=["jpg", "cls"], name="reader")
        return fn.resize(fn.decoders.image(image, device="cpu"), resize_x=32, resize_y=32), label

    pipe = pipeline()
    pipe.build()
    batches = epochs * -(-total // BATCH)
    for _ in range(batches):
        pipe.run()
    return batches * BATCH / (time.perf_counter() - started)


def staged_rate(stream_url: str, total: int, epochs: int, threads: int) -> float:
    """``read_rate`` through this node's copies, made afresh inside the timing."""
    shutil.rmtree(staging_dir(S3Url.parse(stream_url)), ignore_errors=True)  # this run's own copies, from the last repeat
    return read_rate(stream_url, total, epochs, threads, stage=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="s3://BUCKET/PREFIX")
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--per-shard", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-direct", action="store_true",
                        help="skip DALI's own S3 reader (about 0.01 of local disk: minutes at many epochs)")
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
            if not args.no_direct:
                s3.append(read_rate(str(remote), args.samples, args.epochs, args.threads))
            staged.append(staged_rate(str(remote), args.samples, args.epochs, args.threads))
    finally:
        shutil.rmtree(local_dir.parent)
        shutil.rmtree(staging_dir(remote), ignore_errors=True)
        store = S3Store(remote)
        for key, _ in list(store.list("")):
            store.delete(key)
    local_rate, staged_rate_ = statistics.median(local), statistics.median(staged)
    s3_rate = statistics.median(s3) if s3 else float("nan")
    print(f"{args.samples} samples, {args.image_size} px JPEG, {args.per_shard} per shard, {args.epochs} epochs, "
          f"{args.threads} DALI threads, median of {args.repeats}")
    print(f"DALI from local disk: {local_rate:10.0f} samples/s")
    print(f"DALI from {args.root}: {s3_rate:10.0f} samples/s")
    print(f"staged to this node ({PARALLEL_REQUESTS} objects at once), then DALI: {staged_rate_:10.0f} samples/s (copy included)")
    print(f"ratio s3/local:       {s3_rate / local_rate:10.3f}")
    print(f"ratio staged/local:   {staged_rate_ / local_rate:10.3f}  (goal >= 0.8: what trainers and evaluation read)")
    print(f"result: local_samples_per_s={local_rate:.0f} s3_samples_per_s={s3_rate:.0f} staged_samples_per_s={staged_rate_:.0f} "
          f"ratio={s3_rate / local_rate:.3f} staged_ratio={staged_rate_ / local_rate:.3f} goal_met={staged_rate_ / local_rate >= 0.8}")


if __name__ == "__main__":
    main()
