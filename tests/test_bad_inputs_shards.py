"""Bad inputs to the shard store's commands: ``genint shards verify``, ``shards inspect``, ``prepare``
and ``eval --suite shards``, against missing, damaged and hostile stores and sources.

The table's rows end in one error line each (the runner in tests/bad_input_helpers.py). ``verify``
reports every problem of a store on its own line and then a summary, so its damaged-store cases
are a separate test that asserts those lines. Permission cases run as an unprivileged user
(``nobody`` when the tests run as root, whom permissions do not stop).
"""

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

import shards.inspect
import shards.prepare
import shards.verify
from cluster.cli import main
from shards.prepare import prepare_imagefolder
from tests.bad_input_helpers import BadInput, file_tree, check_bad_input, table
from tests.store_helpers import (
    FIRST_SHARD,
    SECOND_SHARD,
    edit_line,
    fifo,
    make_store,
    manifest_lines,
    overwrite_member,
    plant_name,
    plant_terabyte_member,
    replace_shard,
    save_small_classifier,
    truncate,
)

pytestmark = pytest.mark.timeout(120)
FIRST_INDEX = FIRST_SHARD.replace(".tar", ".idx")
STREAM_DIR = "{tmp}/store/original"


def store_with(*edits: Callable[[Path], None]) -> Callable[[Path], None]:
    """A setup: the real writer's store under ``tmp/store/original``, then ``edits`` applied to it."""
    def setup(tmp: Path) -> None:
        stream_dir = make_store(tmp)
        for edit in edits:
            edit(stream_dir)
    return setup


def eval_store_with(*edits: Callable[[Path], None]) -> Callable[[Path], None]:
    """``store_with`` plus a small classifier's weights at ``tmp/w.pt`` for ``genint eval``."""
    def setup(tmp: Path) -> None:
        store_with(*edits)(tmp)
        save_small_classifier(tmp / "w.pt")
    return setup


def source_with(files: dict[str, bytes | None]) -> Callable[[Path], None]:
    """A setup: ``tmp/src`` with the given files (None: a real 8 px PNG)."""
    def setup(tmp: Path) -> None:
        for name, data in files.items():
            path = tmp / "src" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if data is None:
                Image.new("RGB", (8, 8), "red").save(path)
            else:
                path.write_bytes(data)
    return setup


GOOD_SOURCE = {"a/1.png": None, "b/2.png": None}


def prepared_then(*edits: Callable[[Path], None]) -> Callable[[Path], None]:
    """A setup: ``GOOD_SOURCE`` prepared into ``tmp/out/original`` by the real prepare, then ``edits``."""
    def setup(tmp: Path) -> None:
        source_with(GOOD_SOURCE)(tmp)
        prepare_imagefolder(tmp / "src", tmp / "out", "original")
        for edit in edits:
            edit(tmp / "out" / "original")
    return setup


def in_out_stream(edit: Callable[[Path], None]) -> Callable[[Path], None]:
    """A setup: ``GOOD_SOURCE`` and ``edit(tmp/out/original)`` on a fresh stream directory."""
    def setup(tmp: Path) -> None:
        source_with(GOOD_SOURCE)(tmp)
        (tmp / "out" / "original").mkdir(parents=True)
        edit(tmp / "out" / "original")
    return setup


def _json_as_list(size: int) -> bytes:
    return b"[" + b" " * (size - 2) + b"]"


def _random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def _copy_shard_0_over_1(stream_dir: Path) -> None:
    (stream_dir / SECOND_SHARD).write_bytes((stream_dir / FIRST_SHARD).read_bytes())
    (stream_dir / SECOND_SHARD.replace(".tar", ".idx")).write_bytes((stream_dir / FIRST_INDEX).read_bytes())
    first = manifest_lines(stream_dir)[0]
    edit_line(stream_dir, 1, **{key: first[key] for key in ("samples", "bytes", "sha256", "class_counts")})


def _manifest_dir(stream_dir: Path) -> None:
    (stream_dir / "manifest.jsonl").unlink()
    (stream_dir / "manifest.jsonl").mkdir()


def _append_to_index_line(extra: str) -> Callable[[Path], None]:
    def edit(stream_dir: Path) -> None:
        index = stream_dir / FIRST_INDEX
        lines = index.read_text().splitlines()
        lines[1] += extra
        index.write_text("\n".join(lines) + "\n")
    return edit


def _manifest_text(text: str) -> Callable[[Path], None]:
    def edit(stream_dir: Path) -> None:
        (stream_dir / "manifest.jsonl").write_text(text)
    return edit


INSPECT = ["shards", "inspect", "{tmp}/store"]
EVAL = ["eval", "{tmp}/w.pt", "--suite", "shards", "--data", "{tmp}/store", "--arch", "small_cnn",
        "--num-classes", "3", "--device", "cpu"]
PREPARE = ["prepare", "{tmp}/src", "{tmp}/out", "--stream", "original"]

CASES = [
    # verify: failures before any shard is looked at are one line
    BadInput("verify-missing-dir", ["shards", "verify", "{tmp}/absent"], 1, "absent: not a directory"),
    BadInput("verify-dir-is-a-file", ["shards", "verify", "{tmp}/file"], 1, "file: not a directory",
             setup=lambda tmp: (tmp / "file").write_text("x")),
    BadInput("verify-no-manifest", ["shards", "verify", "{tmp}"], 1, "no manifest.jsonl here or in its subdirectories",
             setup=lambda tmp: (tmp / "empty").mkdir()),
    # inspect: every damaged or hostile store is one line, exit 1
    BadInput("inspect-missing-dir", ["shards", "inspect", "{tmp}/absent"], 1, "absent: not a directory"),
    BadInput("inspect-no-manifest", ["shards", "inspect", "{tmp}"], 1, "no manifest.jsonl here",
             setup=lambda tmp: (tmp / "empty").mkdir()),
    BadInput("inspect-missing-shard", INSPECT, 1, f"{FIRST_SHARD}: shard is missing",
             setup=store_with(lambda d: (d / FIRST_SHARD).unlink())),
    BadInput("inspect-truncated-shard", INSPECT, 1, f"{SECOND_SHARD}: shard is 3000 bytes, the manifest says",
             setup=store_with(lambda d: truncate(d / SECOND_SHARD))),
    BadInput("inspect-oversized-shard", INSPECT, 1, "the manifest says",
             setup=store_with(lambda d: (d / FIRST_SHARD).write_bytes((d / FIRST_SHARD).read_bytes() + bytes(512)))),
    BadInput("inspect-non-tar-shard", INSPECT, 1, f"{FIRST_SHARD}: does not start with a tar header",
             setup=store_with(lambda d: _random_bytes(d / FIRST_SHARD))),
    BadInput("inspect-malformed-json-member", INSPECT, 1, "member sample00000.json is not valid JSON",
             setup=store_with(lambda d: overwrite_member(d, FIRST_SHARD, 0, "json", lambda size: b"x" * size))),
    BadInput("inspect-json-member-not-an-object", INSPECT, 1, "member sample00000.json is not a JSON object (got list)",
             setup=store_with(lambda d: overwrite_member(d, FIRST_SHARD, 0, "json", _json_as_list))),
    BadInput("inspect-terabyte-member-header", INSPECT, 1, f"first member is 'sample00000.jpg' ({2**40} bytes)",
             setup=store_with(plant_terabyte_member)),
    BadInput("inspect-line-without-name", INSPECT, 1, "manifest.jsonl:1: bad manifest line (line: a shard line needs the shard's name)",
             setup=store_with(lambda d: edit_line(d, 0, name=None))),
    BadInput("inspect-manifest-is-a-directory", INSPECT, 1, "manifest is a directory, not a regular file",
             setup=store_with(_manifest_dir)),
    BadInput("inspect-manifest-not-json", INSPECT, 1, "manifest.jsonl:1: bad manifest line",
             setup=store_with(_manifest_text("this is not json\n"))),
    BadInput("inspect-pipe-name", INSPECT, 1, "shard name 'pipe:touch MARKER' is not a shard file of the store",
             setup=store_with(lambda d: plant_name(d, "pipe:touch MARKER"))),
    BadInput("inspect-dev-zero-name", INSPECT, 1, "shard name '/dev/zero' is not a shard file of the store",
             setup=store_with(lambda d: plant_name(d, "/dev/zero"))),
    BadInput("inspect-name-escaping-the-stream", INSPECT, 1, "'../original-w0-000000.tar' is not a shard file",
             setup=store_with(lambda d: plant_name(d, "../original-w0-000000.tar"))),
    BadInput("inspect-name-of-another-writer", INSPECT, 1, "does not match the line's writer 'w0' and seq 0",
             setup=store_with(lambda d: plant_name(d, "original-w9-000000.tar"))),
    BadInput("inspect-line-without-sha256", INSPECT, 1, "a shard line needs the shard's sha256",
             setup=store_with(lambda d: edit_line(d, 0, sha256=None))),
    BadInput("inspect-class-counts-not-adding-up", INSPECT, 1, "class counts add up to 3, the line says 4 samples",
             setup=store_with(lambda d: edit_line(d, 0, samples=4))),
    BadInput("inspect-negative-bytes", INSPECT, 1, "bad manifest line (bytes: Input should be greater than or equal to 0)",
             setup=store_with(lambda d: edit_line(d, 0, bytes=-1))),
    BadInput("inspect-unknown-manifest-field", INSPECT, 1, "bad manifest line (command: Extra inputs are not permitted)",
             setup=store_with(lambda d: edit_line(d, 0, command="rm -rf /"))),
    BadInput("inspect-shard-linked-to-dev-zero", INSPECT, 1, "shard is a symbolic link, not a regular file",
             setup=store_with(lambda d: replace_shard(d, FIRST_SHARD, lambda p: p.symlink_to("/dev/zero")))),
    BadInput("inspect-fifo-shard", INSPECT, 1, f"{SECOND_SHARD}: shard is a FIFO, not a regular file",
             setup=store_with(lambda d: replace_shard(d, SECOND_SHARD, fifo))),
    BadInput("inspect-missing-index", INSPECT, 1, "original-w0-000000.idx: DALI index is missing",
             setup=store_with(lambda d: (d / FIRST_INDEX).unlink())),
    BadInput("inspect-garbage-index", INSPECT, 1, "original-w0-000000.idx: not a DALI index",
             setup=store_with(lambda d: (d / FIRST_INDEX).write_bytes(b"garbage\n"))),
    BadInput("inspect-index-lists-a-pickle", INSPECT, 1, "line 2: sample sample00000: fields ['pyd'] are not allowed",
             setup=store_with(_append_to_index_line(" pyd 512 5 sample00000.pyd"))),
    BadInput("inspect-index-points-past-the-tar", INSPECT, 1, "member sample00000.cls lies outside the",
             setup=store_with(lambda d: (d / FIRST_INDEX).write_text(
                 (d / FIRST_INDEX).read_text().replace("cls 512 ", "cls 99999512 ", 1)))),
    BadInput("inspect-duplicate-shard", INSPECT, 1, f"sample key 'sample00000' is also in {FIRST_SHARD}",
             setup=store_with(_copy_shard_0_over_1)),
    # prepare: everything is checked before the first write
    BadInput("prepare-missing-source", PREPARE, 1, "src: source is not a directory"),
    BadInput("prepare-no-class-folders", PREPARE, 1, "no class folders (expected one subdirectory per class)",
             setup=source_with({"1.png": None})),
    BadInput("prepare-no-images", PREPARE, 1, "no image files in its class folders",
             setup=source_with({"a/readme.txt": b"hello"})),
    BadInput("prepare-every-image-unreadable", PREPARE, 1, "none of its 2 image files could be read (first: ",
             setup=source_with({"a/1.jpg": b"\xff\xd8\xff not a jpeg", "b/2.png": b"not a png"})),
    BadInput("prepare-output-inside-the-source", ["prepare", "{tmp}/src", "{tmp}/src/out", "--stream", "original"], 1,
             "the output is inside the source tree", setup=source_with(GOOD_SOURCE)),
    BadInput("prepare-stream-dir-is-the-source", ["prepare", "{tmp}/top/data/a", "{tmp}/top/data", "--stream", "a"], 1,
             "data/a: the output is inside the source tree",
             setup=lambda tmp: source_with({"data/a/x/1.png": None})(tmp) or (tmp / "src").rename(tmp / "top")),
    BadInput("prepare-output-is-a-file", PREPARE, 1, "out: output is not a directory",
             setup=lambda tmp: source_with(GOOD_SOURCE)(tmp) or (tmp / "out").write_text("x")),
    BadInput("prepare-corrupt-plan", PREPARE, 1, "prepare.json: corrupt prepare plan (JSONDecodeError)",
             setup=in_out_stream(lambda d: (d / "prepare.json").write_text('{"source": '))),
    BadInput("prepare-fifo-plan", PREPARE, 1, "prepare.json: prepare plan is a FIFO",
             setup=in_out_stream(lambda d: os.mkfifo(d / "prepare.json"))),
    BadInput("prepare-other-seed", PREPARE + ["--seed", "1"], 1, "already prepared with",
             setup=prepared_then()),
    BadInput("prepare-bad-manifest-in-output", PREPARE, 1, "manifest.jsonl:1: bad manifest line",
             setup=prepared_then(_manifest_text('{"kind": "shard"}\n'))),
    BadInput("prepare-stream-escaping-the-store", ["prepare", "{tmp}/src", "{tmp}/out", "--stream", "../escaped"], 2,
             "must be 1-100 characters from [A-Za-z0-9_]", setup=source_with(GOOD_SOURCE)),
    # eval --suite shards: a store that verify rejects is not scored
    BadInput("eval-shards-truncated", EVAL, 1, f"{SECOND_SHARD}: shard is 3000 bytes, the manifest says",
             setup=eval_store_with(lambda d: truncate(d / SECOND_SHARD))),
    BadInput("eval-shards-pipe-name", EVAL, 1, "shard name 'pipe:touch MARKER' is not a shard file",
             setup=eval_store_with(lambda d: plant_name(d, "pipe:touch MARKER"))),
    BadInput("eval-shards-duplicate-shard", EVAL, 1, "is also in original-w0-000000.tar; not scored",
             setup=eval_store_with(_copy_shard_0_over_1)),
    BadInput("eval-shards-index-lists-a-pickle", EVAL, 1, "fields ['pyd'] are not allowed",
             setup=eval_store_with(_append_to_index_line(" pyd 512 5 sample00000.pyd"))),
    BadInput("eval-shards-no-manifest", EVAL, 1, "no manifest.jsonl here or in its subdirectories",
             setup=lambda tmp: (tmp / "store").mkdir() or save_small_classifier(tmp / "w.pt")),
]


@table(CASES)
def test_bad_input(case, tmp_path, monkeypatch, capsys):
    check_bad_input(case, tmp_path, monkeypatch, capsys)


# s3:// store roots, against the session's SeaweedFS (tests/s3_server.py); "genint-bad-inputs" is
# an existing empty bucket. A job whose output_dir holds another job is refused before it writes,
# on a bucket and on a directory: tests/test_s3_store.py.
S3_STORE = "s3://genint-bad-inputs/store"
S3_CASES = [
    BadInput("verify-s3-unreachable-endpoint", ["shards", "verify", S3_STORE], 1,
             f"{S3_STORE}: cannot reach the S3 endpoint http://127.0.0.1:9 ", env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}),
    BadInput("verify-s3-missing-bucket", ["shards", "verify", "s3://genint-no-such-bucket/store"], 1,
             "s3://genint-no-such-bucket/store: bucket 'genint-no-such-bucket' does not exist"),
    BadInput("verify-s3-wrong-credentials", ["shards", "verify", S3_STORE], 1,
             "refused the credentials while opening the bucket", env={"AWS_SECRET_ACCESS_KEY": "not-the-secret"}),
    BadInput("verify-s3-not-a-store", ["shards", "verify", S3_STORE], 1,
             f"{S3_STORE}: no manifest/ segments here or under its direct prefixes"),
    BadInput("inspect-s3-wrong-credentials", ["shards", "inspect", S3_STORE], 1,
             "refused the credentials", env={"AWS_SECRET_ACCESS_KEY": "not-the-secret"}),
    BadInput("verify-s3-url-with-dotdot", ["shards", "verify", "s3://genint-bad-inputs/a/../b"], 1,
             "s3://genint-bad-inputs/a/../b: not an S3 store root"),
    BadInput("prepare-to-a-missing-bucket", ["prepare", "src", "s3://genint-no-such-bucket/store", "--stream", "original"], 1,
             "s3://genint-no-such-bucket/store: bucket 'genint-no-such-bucket' does not exist"),
]


@table(S3_CASES)
def test_bad_s3_input(case, seaweedfs, tmp_path, monkeypatch, capsys):
    if "genint-bad-inputs" not in {bucket["Name"] for bucket in seaweedfs.client().list_buckets()["Buckets"]}:
        seaweedfs.client().create_bucket(Bucket="genint-bad-inputs")
    check_bad_input(case, tmp_path, monkeypatch, capsys)


# verify on a damaged store: one line per problem (naming the file), then the summary; exit 1.
VERIFY_CASES = {
    "line-without-name": (lambda d: edit_line(d, 0, name=None),
                          ["manifest.jsonl:1: bad manifest line (line: a shard line needs the shard's name)",
                           f"{FIRST_INDEX}: orphan", f"{FIRST_SHARD}: orphan"]),
    "manifest-is-a-directory": (_manifest_dir, ["manifest.jsonl: manifest is a directory, not a regular file"]),
    "truncated-shard": (lambda d: truncate(d / SECOND_SHARD),
                        [f"{SECOND_SHARD}: size 3000 bytes, manifest says", f"{SECOND_SHARD}: member 'sample00003.png' declares"]),
    "oversized-shard": (lambda d: (d / FIRST_SHARD).write_bytes((d / FIRST_SHARD).read_bytes() + bytes(512)),
                        [f"{FIRST_SHARD}: size"]),
    "non-tar-shard": (lambda d: _random_bytes(d / FIRST_SHARD),
                      [f"{FIRST_SHARD}: sha256", f"{FIRST_SHARD}: unreadable tar"]),
    "malformed-json-member": (lambda d: overwrite_member(d, FIRST_SHARD, 0, "json", lambda size: b"x" * size),
                              [f"{FIRST_SHARD}: sha256", f"{FIRST_SHARD}: sample sample00000: json field is not valid JSON"]),
    "terabyte-member-header": (plant_terabyte_member, [f"{FIRST_SHARD}: member 'sample00000.jpg' declares {2**40} bytes"]),
    "pipe-name": (lambda d: plant_name(d, "pipe:touch MARKER"),
                  ["is not a shard file of the store", f"{FIRST_INDEX}: orphan", f"{FIRST_SHARD}: orphan"]),
    "fifo-shard": (lambda d: replace_shard(d, SECOND_SHARD, fifo), [f"{SECOND_SHARD}: shard is a FIFO"]),
    "fifo-index": (lambda d: replace_shard(d, FIRST_INDEX, fifo), [f"{FIRST_INDEX}: DALI index is a FIFO"]),
    "missing-shard": (lambda d: (d / FIRST_SHARD).unlink(), [f"{FIRST_SHARD}: missing"]),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("edit, expected", VERIFY_CASES.values(), ids=VERIFY_CASES.keys())
def test_verify_reports_each_problem_on_its_own_line(edit, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    store_with(edit)(tmp_path)
    before = file_tree(tmp_path)
    capsys.readouterr()
    code = main(["shards", "verify", str(tmp_path / "store")])
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert code == 1 and "Traceback" not in out + err
    assert len(lines) == len(expected) + 1, lines
    for line, fragment in zip(lines, expected):
        assert fragment in line and line.startswith(str(tmp_path / "store" / "original")), (fragment, line)
    assert lines[-1].startswith(f"verify: {len(expected)} problems in")
    assert file_tree(tmp_path) == before
    assert not (tmp_path / "MARKER").exists()


NOBODY = 65534


@pytest.fixture
def shared_dir():
    """A directory an unprivileged user can reach (pytest's own tmp root is private to its user)."""
    path = Path(tempfile.mkdtemp(prefix="genint-perm-"))
    path.chmod(0o755)
    yield path
    for directory, names, _ in os.walk(path):
        for name in names:
            (Path(directory) / name).chmod(0o755)
    shutil.rmtree(path)


def run_unprivileged(argv: list[str], cwd: Path) -> tuple[int, str, str]:
    """``genint argv`` in a forked child that runs as ``nobody`` when we are root (whom file modes
    do not stop). The modules it needs are imported already, so the child reads only ``cwd``."""
    assert shards.prepare and shards.verify and shards.inspect  # imported before the fork on purpose
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setresgid(NOBODY, NOBODY, NOBODY)
                os.setresuid(NOBODY, NOBODY, NOBODY)
            os.chdir(cwd)
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = main(argv)
                except SystemExit as exit_:
                    code = exit_.code
            payload = [code, out.getvalue(), err.getvalue()]
        except BaseException as error:
            payload = [-1, "", f"child failed: {error!r}"]
        with os.fdopen(write_end, "w") as pipe:
            json.dump(payload, pipe)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        code, out, err = json.load(pipe)
    os.waitpid(child, 0)
    return code, out, err


def _unreadable(path: Path) -> None:
    path.chmod(0o000)


PERMISSION_CASES = {
    "inspect-unreadable-shard": (store_with(lambda d: _unreadable(d / FIRST_SHARD)), INSPECT,
                                 f"{FIRST_SHARD}: shard cannot be opened (Permission denied)"),
    "verify-unreadable-store": (store_with(lambda d: _unreadable(d)), ["shards", "verify", STREAM_DIR],
                                "original: cannot list the store (Permission denied)"),
    "prepare-unreadable-source": (lambda tmp: source_with(GOOD_SOURCE)(tmp) or _unreadable(tmp / "src"), PREPARE,
                                  "src: cannot read the source (Permission denied)"),
    "prepare-unreadable-class-folder": (lambda tmp: source_with(GOOD_SOURCE)(tmp) or _unreadable(tmp / "src" / "b"),
                                        PREPARE, "src/b: cannot read the source (Permission denied)"),
    "prepare-unwritable-output": (lambda tmp: source_with(GOOD_SOURCE)(tmp) or (tmp / "out").mkdir(mode=0o555), PREPARE,
                                  "out/original: cannot write the prepared stream (Permission denied)"),
    "prepare-unreadable-plan": (prepared_then(lambda d: _unreadable(d / "prepare.json")), PREPARE,
                                "prepare.json: prepare plan cannot be opened (Permission denied)"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("setup, argv, message", PERMISSION_CASES.values(), ids=PERMISSION_CASES.keys())
def test_permission_denied_is_one_line(setup, argv, message, shared_dir):
    setup(shared_dir)
    before = file_tree(shared_dir)
    code, out, err = run_unprivileged([part.format(tmp=shared_dir) for part in argv], shared_dir)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "Traceback" not in out + err, err
    assert lines[0].startswith("genint: error:") and message in lines[0], lines[0]
    assert file_tree(shared_dir) == before


def test_verify_reports_an_unreadable_shard(shared_dir):
    store_with(lambda d: _unreadable(d / SECOND_SHARD))(shared_dir)
    code, _, err = run_unprivileged(["shards", "verify", str(shared_dir / "store")], shared_dir)
    assert code == 1
    assert err.splitlines()[0] == f"{shared_dir / 'store/original' / SECOND_SHARD}: shard cannot be opened (Permission denied)"
    assert err.splitlines()[1].startswith("verify: 1 problems") and len(err.splitlines()) == 2
