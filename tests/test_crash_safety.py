"""SIGKILL a writer mid-shard: nothing partial is committed and the next writer cleans up."""

import os
import signal
import subprocess
import sys
import textwrap
import time

from shards.manifest import Manifest
from shards.verify import verify_store
from shards.writer import ShardWriter
from tests.conftest import make_sample

# Writes 13 samples (shards of 5), waits until the first two shards are committed (commits run
# on a background thread), then reports that it is in the middle of the third and sleeps.
WRITER_SCRIPT = textwrap.dedent("""
    import sys, threading, time
    from shards.writer import ShardWriter
    from tests.conftest import make_sample
    committed = threading.Semaphore(0)
    with ShardWriter(sys.argv[1], "original", "w0", "h", max_samples=5, on_commit=lambda r: committed.release()) as writer:
        for index in range(13):
            writer.write(make_sample(index))
        for _ in range(2):
            committed.acquire(timeout=30)
        print("mid-shard", flush=True)
        time.sleep(60)
""")


def test_sigkill_mid_shard_leaves_only_committed_shards(stream_dir):
    process = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, str(stream_dir)], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    assert process.stdout.readline().strip() == "mid-shard"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)

    records = Manifest(stream_dir).shards()
    assert [record.samples for record in records] == [5, 5]
    temp_files = list(stream_dir.glob("*.tmp"))
    assert [path.name for path in temp_files] == ["original-w0-000002.tar.tmp"]
    findings, totals = verify_store(stream_dir)
    assert [finding.is_problem for finding in findings] == [False]  # only the temp-file note
    assert totals["samples"] == 10

    started = time.monotonic()
    with ShardWriter(stream_dir, "original", "w0", "h", max_samples=5) as writer:
        assert not temp_files[0].exists()
        writer.write(make_sample(10))
    assert time.monotonic() - started < 10
    assert [record.name for record in Manifest(stream_dir).shards()][-1] == "original-w0-000002.tar"
    assert verify_store(stream_dir)[0] == []


def test_next_writer_removes_a_shard_renamed_but_never_committed(stream_dir):
    with ShardWriter(stream_dir, "original", "w0", "h", max_samples=5) as writer:
        for index in range(5):
            writer.write(make_sample(index))
    orphan = stream_dir / "original-w0-000001.tar"
    orphan.write_bytes((stream_dir / "original-w0-000000.tar").read_bytes())
    assert any("orphan" in finding.message for finding in verify_store(stream_dir)[0])
    ShardWriter(stream_dir, "original", "w0", "h").close()
    assert not orphan.exists()
    assert verify_store(stream_dir)[0] == []
