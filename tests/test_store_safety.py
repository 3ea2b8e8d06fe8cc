"""Shards are data, never code, and the store's readers read only its own regular files.

A planted manifest name (``pipe:...`` would run a shell command through webdataset, ``/dev/zero``
would be hashed forever), a shard replaced by a symbolic link out of the store, a FIFO or a device:
every reader (the manifest parser, ``committed_shards``, ``iter_samples``, ``verify``, ``inspect``,
the CVAE's training-stream reader behind ``genint generator train``, ``genint eval --suite shards``)
refuses it in one line, quickly, and nothing planted ever runs.
"""

import os
import stat

import pytest
import webdataset

from cluster.cli import main
from datagen.errors import DatagenError
from datagen.generators.cvae_training import load_stream_images
from shards.errors import ManifestError, ShardError
from shards.manifest import Manifest
from shards.reader import check_committed_shards, check_shard, committed_shards, iter_samples
from shards.verify import verify_store
from tests.store_helpers import (
    FIRST_SHARD,
    SECOND_SHARD,
    edit_line,
    fifo,
    make_store,
    manifest_lines,
    plant_name,
    plant_terabyte_member,
    replace_shard,
    save_small_classifier,
    truncate,
)
from trainers.errors import TrainError
from trainers.evaluation.loading import shard_files

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def store(tmp_path):
    return make_store(tmp_path)


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "MARKER"


@pytest.fixture
def planted(store, marker):
    """A manifest whose first line names ``pipe:touch MARKER`` (every other field intact)."""
    plant_name(store, f"pipe:touch {marker}")
    return store


def _problems(root) -> list[str]:
    return [str(finding) for finding in verify_store(root)[0] if finding.is_problem]


def test_a_pipe_name_would_run_if_webdataset_were_handed_it(marker):
    # The threat is real: webdataset reads this name as a shell command. Every test below would
    # see MARKER appear if a reader still handed manifest names to webdataset.
    list(webdataset.WebDataset([f"pipe:touch {marker}"], shardshuffle=False, empty_check=False,
                               handler=webdataset.ignore_and_continue))
    assert marker.exists()


def test_the_manifest_parser_refuses_a_pipe_name(planted, marker):
    with pytest.raises(ManifestError, match=r"manifest.jsonl:1: bad manifest line \(line: shard name 'pipe:touch .*' "
                                            r"is not a shard file of the store"):
        Manifest(planted).shards()
    assert not marker.exists()


def test_committed_shards_refuses_a_pipe_name(planted, marker):
    with pytest.raises(ShardError, match="manifest.jsonl:1: bad manifest line"):
        committed_shards(planted)
    assert not marker.exists()


def test_iter_samples_opens_files_never_urls(store, marker):
    readable = [path for path, _ in committed_shards(store)]
    assert len(list(iter_samples(readable))) == 6  # the store's own shards still read
    for url in (f"pipe:touch {marker}", f"pipe:touch {marker};:/{FIRST_SHARD}"):
        # The second passes the file-name check; it is then opened as a (missing) file, not run.
        with pytest.raises(ShardError, match="not a shard file of the store|shard is missing"):
            list(iter_samples([url]))
    assert not marker.exists()


def test_verify_reports_a_pipe_name_as_one_problem(planted, marker, capsys):
    assert main(["shards", "verify", str(planted)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert "manifest.jsonl:1: bad manifest line" in err[0] and "not a shard file" in err[0]
    # The shard the line named before is now in no line: it and its index are orphans.
    assert err[1:3] == [f"{planted / FIRST_SHARD.replace('.tar', suffix)}: orphan: not in the manifest" for suffix in (".idx", ".tar")]
    assert err[3].startswith("verify: 3 problems") and len(err) == 4
    assert not marker.exists()


def test_inspect_refuses_a_pipe_name_in_one_line(planted, marker, capsys):
    assert main(["shards", "inspect", str(planted)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "manifest.jsonl:1: bad manifest line" in err[0]
    assert not marker.exists()


def test_the_generator_training_stream_reader_refuses_a_pipe_name(planted, marker):
    with pytest.raises(DatagenError, match="manifest.jsonl:1: bad manifest line"):
        load_stream_images(planted, 16)
    assert not marker.exists()


@pytest.mark.timeout(10)
def test_a_dev_zero_name_is_refused_at_once(store):
    plant_name(store, "/dev/zero")
    assert any("manifest.jsonl:1: bad manifest line" in line and "'/dev/zero'" in line for line in _problems(store))
    with pytest.raises(ShardError, match="not a shard file of the store"):
        committed_shards(store)


@pytest.mark.timeout(10)
def test_a_shard_linked_to_dev_zero_is_not_read(store, capsys):
    replace_shard(store, FIRST_SHARD, lambda path: path.symlink_to("/dev/zero"))
    assert _problems(store) == [f"{store / FIRST_SHARD}: shard is a symbolic link, not a regular file "
                                "(the store holds only regular files)"]
    assert main(["shards", "inspect", str(store)]) == 1
    assert "symbolic link" in capsys.readouterr().err


@pytest.mark.timeout(10)
def test_a_device_in_the_store_is_not_read(store):
    path = store / FIRST_SHARD
    path.unlink()
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # the device /dev/zero is
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    assert any("shard is a character device" in line for line in _problems(store))
    with pytest.raises(ShardError, match="character device"):
        committed_shards(store)


def test_a_symlink_out_of_the_store_is_not_followed(store, tmp_path):
    outside = tmp_path / "elsewhere.tar"
    outside.write_bytes((store / FIRST_SHARD).read_bytes())  # identical bytes: only the link is wrong
    replace_shard(store, FIRST_SHARD, lambda path: path.symlink_to(outside))
    assert any("shard is a symbolic link" in line for line in _problems(store))
    with pytest.raises(ShardError, match="symbolic link"):
        committed_shards(store)
    with pytest.raises(ShardError, match="symbolic link"):
        list(iter_samples([store / FIRST_SHARD]))


def test_an_index_linked_out_of_the_store_is_not_followed(store, tmp_path):
    index = store / FIRST_SHARD.replace(".tar", ".idx")
    outside = tmp_path / "elsewhere.idx"
    outside.write_bytes(index.read_bytes())
    index.unlink()
    index.symlink_to(outside)
    record = Manifest(store).shards()[0]
    with pytest.raises(ShardError, match=r"\.idx: DALI index is a symbolic link"):
        check_shard(store / FIRST_SHARD, record)
    assert any("DALI index is a symbolic link" in line for line in _problems(store))


@pytest.mark.timeout(10)
def test_a_fifo_shard_never_blocks(store, capsys):
    replace_shard(store, SECOND_SHARD, fifo)
    assert any("shard is a FIFO" in line for line in _problems(store))
    with pytest.raises(ShardError, match="FIFO"):
        committed_shards(store)
    with pytest.raises(ShardError, match="FIFO"):
        list(iter_samples([store / SECOND_SHARD]))
    assert main(["shards", "inspect", str(store)]) == 1
    assert "shard is a FIFO" in capsys.readouterr().err


@pytest.mark.timeout(10)
def test_a_fifo_manifest_never_blocks(store):
    manifest = store / "manifest.jsonl"
    manifest.unlink()
    os.mkfifo(manifest)
    assert _problems(store) == [f"{manifest}: manifest is a FIFO, not a regular file (the store holds only regular files)"]
    with pytest.raises(ShardError, match="manifest is a FIFO"):
        Manifest(store).records()


def test_a_terabyte_member_header_is_never_read(store):
    plant_terabyte_member(store)
    assert any(f"member 'sample00000.jpg' declares {2**40} bytes" in line for line in _problems(store))
    with pytest.raises(ShardError, match=f"first member is 'sample00000.jpg' \\({2**40} bytes\\)"):
        check_shard(store / FIRST_SHARD, Manifest(store).shards()[0])


def test_eval_refuses_a_truncated_shard(store, tmp_path, capsys):
    truncate(store / SECOND_SHARD)
    weights = save_small_classifier(tmp_path / "w.pt")
    code = main(["eval", str(weights), "--suite", "shards", "--data", str(store), "--arch", "small_cnn",
                 "--num-classes", "3", "--device", "cpu", "--json", str(tmp_path / "result.json")])
    err = capsys.readouterr().err.splitlines()
    assert code == 1 and len(err) == 1
    assert f"{store / SECOND_SHARD}: shard is 3000 bytes, the manifest says" in err[0] and "not scored" in err[0]
    assert not (tmp_path / "result.json").exists()


def test_eval_refuses_what_verify_rejects_even_at_the_right_size(store, tmp_path):
    # A copy of shard 0 in shard 1's place, its manifest line made to agree: sizes match, but the
    # keys repeat, which verify reports and eval must not score twice.
    (store / SECOND_SHARD).write_bytes((store / FIRST_SHARD).read_bytes())
    (store / SECOND_SHARD.replace(".tar", ".idx")).write_bytes((store / FIRST_SHARD.replace(".tar", ".idx")).read_bytes())
    first = manifest_lines(store)[0]
    edit_line(store, 1, **{key: first[key] for key in ("samples", "bytes", "sha256", "index_sha256", "class_counts")})
    assert any("duplicate key" in line for line in _problems(store))
    with pytest.raises(TrainError, match=f"{SECOND_SHARD}: sample key 'sample00000' is also in {FIRST_SHARD}"):
        shard_files(store)
    assert [shard.reason for shard in check_committed_shards(store)[1]] == [
        f"{store / SECOND_SHARD}: sample key 'sample00000' is also in {FIRST_SHARD}"]
