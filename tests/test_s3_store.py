"""The store on S3-compatible object storage (a real SeaweedFS on 127.0.0.1), and the same
exactly-once and crash-safety promises held on both backends."""

import os
import signal
import subprocess
import sys

import pytest
import yaml

from cluster.cli import main
from cluster.config import RESOLVED_CONFIG_FILE
from shards.storage import S3Store, S3Url, StorageError
from shards.stores import open_follower, open_manifest, open_unit_tracker, write_stream_file
from shards.verify import verify_store
from shards.writer import ShardWriter
from tests.bad_input_helpers import file_tree
from tests.conftest import make_sample, write_stream
from tests.test_crash_safety import WRITER_SCRIPT  # the same writer, killed mid-shard, on both backends


@pytest.fixture(params=["local", "s3"])
def any_stream(request, tmp_path) -> str:
    """A fresh stream location on each backend: a directory, or a prefix in a new bucket."""
    if request.param == "local":
        return str(tmp_path / "store" / "original")
    server = request.getfixturevalue("seaweedfs")
    return f"s3://{server.new_bucket()}/job/original"


def _objects(url: str) -> list[str]:
    return sorted(key for key, _ in S3Store(S3Url.parse(url)).list(""))


def test_s3_stream_commits_tar_index_and_one_segment_per_shard(seaweedfs):
    url = f"s3://{seaweedfs.new_bucket()}/job/original"
    samples = write_stream(url, 12, max_samples=5)
    assert _objects(url) == [
        "manifest/w0/000000000000.jsonl", "manifest/w0/000000000001.jsonl", "manifest/w0/000000000002.jsonl",
        "original-w0-000000.idx", "original-w0-000000.tar", "original-w0-000001.idx", "original-w0-000001.tar",
        "original-w0-000002.idx", "original-w0-000002.tar",
    ]
    records = open_manifest(url).shards()
    assert [record.samples for record in records] == [5, 5, 2]
    assert sum(record.samples for record in records) == len(samples)
    findings, totals = verify_store(url)
    assert findings == [] and totals == {"streams": 1, "shards": 3, "samples": 12}


def test_verify_names_the_object_whose_bytes_changed(seaweedfs):
    url = f"s3://{seaweedfs.new_bucket()}/job/original"
    write_stream(url, 6, max_samples=3)
    store = S3Store(S3Url.parse(url))
    data = bytearray(store.get("original-w0-000001.tar", "shard", 2**20))
    data[700] ^= 0xFF
    store.put("original-w0-000001.tar", bytes(data))
    store.put("original-w9-000000.tar", b"stray")
    findings, _ = verify_store(f"s3://{url.removeprefix('s3://').split('/')[0]}/job")
    problems = {str(finding) for finding in findings if finding.is_problem}
    assert any(text.startswith(f"{url}/original-w0-000001.tar: sha256") for text in problems), problems
    assert f"{url}/original-w9-000000.tar: orphan: not in the manifest" in problems


def test_sigkill_mid_shard_leaves_only_committed_shards(any_stream):
    process = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, any_stream], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    assert process.stdout.readline().strip() == "mid-shard"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert [record.samples for record in open_manifest(any_stream).shards()] == [5, 5]
    assert verify_store(any_stream)[1]["samples"] == 10
    assert [finding for finding in verify_store(any_stream)[0] if finding.is_problem] == []

    with ShardWriter(any_stream, "original", "w0", "h", max_samples=5) as writer:
        for index in range(10, 13):
            writer.write(make_sample(index))
    records = open_manifest(any_stream).shards()
    assert [record.name for record in records] == [f"original-w0-00000{seq}.tar" for seq in range(3)]
    assert [record.samples for record in records] == [5, 5, 3]
    assert [finding for finding in verify_store(any_stream)[0] if finding.is_problem] == []


def test_restarted_writer_deletes_its_uncommitted_objects_and_nothing_else(seaweedfs):
    url = f"s3://{seaweedfs.new_bucket()}/job/original"
    write_stream(url, 5, max_samples=5)
    store = S3Store(S3Url.parse(url))
    store.put("original-w0-000001.tar", b"uploaded, never committed")  # a crash between upload and segment
    store.put("original-w1-000000.tar", b"another writer's")
    store.put("notes.txt", b"the user's")
    with ShardWriter(url, "original", "w0", "testhash", max_samples=5):
        pass
    assert "original-w0-000001.tar" not in _objects(url)
    assert {"original-w1-000000.tar", "notes.txt"} <= set(_objects(url))


def test_units_are_done_exactly_once_across_a_restart(any_stream):
    with ShardWriter(any_stream, "original", "w0", "h", max_samples=4) as writer:
        for index in range(6):
            writer.write(make_sample(index), unit="u0")
        writer.end_unit("u0")
        writer.write(make_sample(6), unit="u1")
    tracker = open_unit_tracker(any_stream).refresh()
    assert tracker.is_done("u0") and not tracker.is_done("u1")
    assert tracker.get("u0").samples == 6 and tracker.get("u1").samples == 1
    with ShardWriter(any_stream, "original", "w0", "h", max_samples=4) as writer:
        writer.end_unit("u1")
    assert tracker.refresh().is_done("u1") and tracker.get("u1").samples == 1


def test_follower_sees_every_writer_commit_once_and_resumes_from_its_state(any_stream):
    follower = open_follower(any_stream)
    write_stream(any_stream, 4, max_samples=2, writer_id="w0")
    first = follower.poll()
    saved = follower.state_dict()
    write_stream(any_stream, 2, max_samples=2, writer_id="w1")
    second = follower.poll()
    assert [record.name for record in first] == ["original-w0-000000.tar", "original-w0-000001.tar"]
    assert [record.name for record in second] == ["original-w1-000000.tar"]
    assert follower.poll() == []
    resumed = open_follower(any_stream)
    resumed.load_state_dict(saved)
    assert resumed.poll() == second


def test_a_second_live_writer_with_the_same_id_is_refused_at_commit(seaweedfs):
    url = f"s3://{seaweedfs.new_bucket()}/job/original"
    first = ShardWriter(url, "original", "w0", "h", max_samples=1)
    second = ShardWriter(url, "original", "w0", "h", max_samples=1)
    first.write(make_sample(0))
    first.flush()
    second.write(make_sample(1))
    with pytest.raises(Exception, match="already committed; writer id 'w0' is in use"):
        second.flush()
    first.close()
    second.abort()
    assert [record.samples for record in open_manifest(url).shards()] == [1]


def test_unreachable_endpoint_missing_bucket_and_wrong_credentials_name_the_url(seaweedfs, monkeypatch):
    url = f"s3://{seaweedfs.new_bucket()}/job/original"
    with pytest.raises(StorageError, match=r"^s3://genint-test-[0-9a-f]+-\d+/job/original: .*refused the credentials .*AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
        ShardWriter(url, "original", "w0", "h")
    monkeypatch.undo()
    with pytest.raises(StorageError, match=r"^s3://genint-missing/x: bucket 'genint-missing' does not exist"):
        ShardWriter("s3://genint-missing/x", "original", "w0", "h")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    with pytest.raises(StorageError, match=r"cannot reach the S3 endpoint http://127.0.0.1:9 .*AWS_ENDPOINT_URL"):
        ShardWriter(url, "original", "w0", "h")


def test_a_stream_copied_from_a_local_store_reads_its_manifest_and_takes_new_segments(seaweedfs, tmp_path):
    local = tmp_path / "store" / "original"
    write_stream(local, 6, max_samples=3)
    url = f"s3://{seaweedfs.new_bucket()}/copied/original"
    store = S3Store(S3Url.parse(url))
    for path in local.iterdir():
        if not path.name.startswith("."):
            store.upload(path, path.name)  # what `aws s3 sync` of the directory does
    with ShardWriter(url, "original", "w1", "testhash", max_samples=3) as writer:
        writer.write(make_sample(6))
    assert [record.name for record in open_manifest(url).shards()] == [
        "original-w0-000000.tar", "original-w0-000001.tar", "original-w1-000000.tar"]
    assert verify_store(url) == ([], {"streams": 1, "shards": 3, "samples": 7})


def test_a_writer_continues_its_stream_under_another_config_hash_on_both_backends(any_stream):
    write_stream(any_stream, 3, max_samples=3)  # config hash "testhash"
    with ShardWriter(any_stream, "original", "w0", "edited", max_samples=3) as writer:  # the job rerun with an edited config
        writer.write(make_sample(3))
    records = open_manifest(any_stream).shards()
    assert [(record.seq, record.config_hash) for record in records] == [(0, "testhash"), (1, "edited")]


def _owned_by(location: str, name: str) -> None:
    """Make ``location`` an output_dir that job ``name`` ran in (its resolved config)."""
    write_stream_file(location, RESOLVED_CONFIG_FILE, f"# sha256: 0\nname: {name}\noutput_dir: {location}\n".encode())


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_job_whose_output_dir_holds_another_job_is_refused_before_anything_is_written(backend, tmp_path, monkeypatch, capsys, request):
    output = str(tmp_path / "out") if backend == "local" else f"s3://{request.getfixturevalue('seaweedfs').new_bucket()}/out"
    _owned_by(output, "first-job")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(
        {"name": "second-job", "output_dir": output, "train": {"model": "small_cnn", "streams": {"original": {"batch_size": 4}}}}))
    before = _objects(output) if backend == "s3" else file_tree(tmp_path)
    monkeypatch.chdir(tmp_path)

    assert main(["run", "job.yaml"]) == 1
    assert capsys.readouterr().err.strip() == (f"genint: error: output_dir {output}: holds job 'first-job''s files; give job "
                                               "'second-job' its own output_dir (or name this job 'first-job' to continue that one)")
    assert (_objects(output) if backend == "s3" else file_tree(tmp_path)) == before
