"""verify catches each kind of damage and names the file."""

import json
import shutil
import tarfile

import pytest

from cluster.cli import main
from shards.verify import verify_store
from tests.conftest import write_stream


@pytest.fixture
def store(stream_dir):
    write_stream(stream_dir, 15, max_samples=5)
    return stream_dir


def _problems(store):
    return [str(finding) for finding in verify_store(store.parent)[0] if finding.is_problem]


def test_clean_store_passes(store, capsys):
    assert _problems(store) == []
    assert main(["shards", "verify", str(store.parent)]) == 0
    assert "verify: ok (1 streams, 3 shards, 15 samples)" in capsys.readouterr().out


def test_truncated_tar(store, capsys):
    path = store / "original-w0-000001.tar"
    path.write_bytes(path.read_bytes()[:3000])
    problems = _problems(store)
    assert any("original-w0-000001.tar: size 3000 bytes" in line for line in problems)
    assert main(["shards", "verify", str(store)]) == 1
    assert "original-w0-000001.tar" in capsys.readouterr().err


def test_flipped_byte(store):
    path = store / "original-w0-000000.tar"
    data = bytearray(path.read_bytes())
    data[1700] ^= 0xFF
    path.write_bytes(bytes(data))
    assert any("original-w0-000000.tar: sha256" in line for line in _problems(store))


def test_missing_shard(store):
    (store / "original-w0-000002.tar").unlink()
    assert any("original-w0-000002.tar: missing" in line for line in _problems(store))


def test_duplicate_key_across_shards(store, tmp_path):
    # Rewrite shard 2 so that it repeats a key of shard 0, and fix its manifest line so that
    # only the duplicate is wrong.
    source, target = store / "original-w0-000000.tar", store / "original-w0-000002.tar"
    shutil.copy(source, target)
    shutil.copy(source.with_suffix(".idx"), target.with_suffix(".idx"))
    lines = (store / "manifest.jsonl").read_text().splitlines()
    first, last = json.loads(lines[0]), json.loads(lines[2])
    last.update({key: first[key] for key in ("samples", "bytes", "sha256", "index_sha256", "class_counts")})
    lines[2] = json.dumps(last)
    (store / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    problems = _problems(store)
    assert len(problems) == 5
    assert all("duplicate key" in line and "original-w0-000002.tar" in line for line in problems)


def test_index_not_matching_the_tar(store):
    index = store / "original-w0-000000.idx"
    index.write_text(index.read_text().replace(" 512 ", " 1024 ", 1))
    assert any("original-w0-000000.idx: DALI index does not match" in line for line in _problems(store))


def test_pickle_member_is_reported_without_being_loaded(store):
    path = store / "original-w0-000000.tar"
    with tarfile.open(path, "a") as archive:
        info = tarfile.TarInfo("sample00000.pyd")
        payload = b"\x80\x04K\x01."
        info.size = len(payload)
        import io
        archive.addfile(info, io.BytesIO(payload))
    assert any("fields ['pyd'] are not allowed" in line for line in _problems(store))


def test_bad_manifest_line(store):
    with open(store / "manifest.jsonl", "a") as manifest:
        manifest.write('{"kind": "shard", "name": 7}\n')
    assert any("bad manifest line" in line for line in _problems(store))
