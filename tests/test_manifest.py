"""Manifest appends are atomic across processes; followers see new shards and resume."""

import json
import multiprocessing
import threading
import time

from shards.manifest import Manifest, ManifestFollower, ManifestRecord
from shards.names import shard_name
from shards.writer import ShardWriter
from tests.conftest import make_sample


def follow(follower: ManifestFollower, stop, poll_interval_s: float, idle_timeout_s: float | None = None):
    """Yield shard records as ``follower`` polls them until ``stop()`` is true or nothing new arrived
    for ``idle_timeout_s`` seconds; records committed before ``stop()`` turned true are still yielded."""
    last_new = time.monotonic()
    while True:
        stopping = stop()
        records = follower.poll()
        yield from records
        if records:
            last_new = time.monotonic()
        if stopping or (idle_timeout_s is not None and time.monotonic() - last_new > idle_timeout_s):
            return
        time.sleep(poll_interval_s)


def _append_many(stream_dir, writer, count):
    manifest = Manifest(stream_dir)
    for seq in range(count):
        manifest.append([ManifestRecord(name=shard_name("s", writer, seq) + ".tar", sha256="0" * 64, writer=writer, seq=seq,
                                        config_hash="h", time=0.0)])


def test_concurrent_appends_from_processes_never_interleave(stream_dir):
    stream_dir.mkdir(parents=True)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(stream_dir, f"p{i}", 200)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    lines = (stream_dir / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 800
    records = [json.loads(line) for line in lines]
    for writer in ("p0", "p1", "p2", "p3"):
        assert [r["seq"] for r in records if r["writer"] == writer] == list(range(200))


def test_incomplete_last_line_is_not_read_yet(stream_dir):
    _append_many(stream_dir, "w", 2)
    with open(stream_dir / "manifest.jsonl", "ab") as handle:
        handle.write(b'{"name": "half')
    follower = ManifestFollower(stream_dir)
    assert [record.seq for record in follower.poll()] == [0, 1]
    assert follower.poll() == []


def test_follower_yields_shards_committed_while_following(stream_dir):
    def write_slowly():
        with ShardWriter(stream_dir, "original", "w0", "h", max_samples=2) as writer:
            for index in range(6):
                writer.write(make_sample(index))
                time.sleep(0.05)

    producer = threading.Thread(target=write_slowly)
    producer.start()
    follower = ManifestFollower(stream_dir)
    seen = [record.name for record in follow(follower, stop=lambda: not producer.is_alive(), poll_interval_s=0.02)]
    producer.join()
    assert seen == [f"original-w0-{seq:06d}.tar" for seq in range(3)]


def test_follower_stops_after_idle_timeout(stream_dir):
    _append_many(stream_dir, "w", 1)
    started = time.monotonic()
    seen = list(follow(ManifestFollower(stream_dir), stop=lambda: False, poll_interval_s=0.02, idle_timeout_s=0.2))
    assert len(seen) == 1
    assert 0.2 <= time.monotonic() - started < 5


def test_follower_position_restores(stream_dir):
    _append_many(stream_dir, "w", 3)
    follower = ManifestFollower(stream_dir)
    assert len(follower.poll()) == 3
    state = follower.state_dict()
    _append_many(stream_dir, "x", 2)
    restored = ManifestFollower(stream_dir)
    restored.load_state_dict(state)
    assert [(r.writer, r.seq) for r in restored.poll()] == [("x", 0), ("x", 1)]
