"""The bad-input suite, CLI part: usage errors, output directories, `experiment --fresh` on what
genint did not create, and the flags of eval, prepare and imagenet-c. Each row: its exit code,
one line, no traceback, nothing written (see tests/bad_input_helpers.py)."""

from pathlib import Path

import yaml

from cluster.run_dirs import MARKER_FILE
from tests.bad_input_helpers import BadInput, check_bad_input, table

EXPERIMENT = str(Path(__file__).parent.parent / "configs" / "experiments" / "colored-digits.yaml")
JOB = {"name": "job", "output_dir": "out", "train": {"model": "small_cnn", "streams": {"original": {"batch_size": 4}}}}


def _job(**fields):
    """A setup writing job.yaml (JOB with ``fields`` replacing its top-level keys)."""
    def setup(root: Path) -> None:
        (root / "job.yaml").write_text(yaml.safe_dump(JOB | fields))
    return setup


def _user_files(*names: str):
    """A setup making the user's own files (``dir/file`` names make the directory too)."""
    def setup(root: Path) -> None:
        for name in names:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text("the user's own work")
    return setup


def _marked_run_with_user_file(root: Path) -> None:
    (root / "run").mkdir()
    (root / "run" / MARKER_FILE).write_text("{}")
    (root / "run" / "report.md").write_text("a report genint wrote")
    (root / "run" / "notes.txt").write_text("the user's own work")


def _ran_job(name: str):
    """A setup making out/ the output_dir that job ``name`` ran in (its resolved config)."""
    def setup(root: Path) -> None:
        (root / "out").mkdir()
        (root / "out" / "config.yaml").write_text(f"# sha256: 0\nname: {name}\noutput_dir: out\n")
    return setup


def _both(*setups):
    def setup(root: Path) -> None:
        for each in setups:
            each(root)
    return setup


CASES = [
    # usage
    BadInput("no-command", [], 2, "the following arguments are required: command"),
    BadInput("unknown-command", ["launch"], 2, "invalid choice: 'launch'"),
    BadInput("run-without-config", ["run"], 2, "genint run: error: the following arguments are required: config"),
    BadInput("unknown-flag", ["config", "check", "job.yaml", "--sett", "a=b"], 2, "unrecognized arguments: --sett"),
    BadInput("config-missing", ["run", "absent.yaml"], 2, "absent.yaml: config file not found"),
    # experiment --fresh deletes only what genint created
    BadInput("fresh-working-directory", ["experiment", EXPERIMENT, "--fresh", "--set", "output_dir=."], 1,
             "not deleted: it is the working directory", _user_files("thesis.tex")),
    BadInput("fresh-parent-of-working-directory", ["experiment", EXPERIMENT, "--fresh", "--set", "output_dir=.."], 1,
             "not deleted: it holds the working directory"),
    BadInput("fresh-home", ["experiment", EXPERIMENT, "--fresh", "--set", "output_dir={tmp}/home"], 1,
             "not deleted: it is the home directory", _user_files("home/.bashrc"), env={"HOME": "{tmp}/home"}),
    BadInput("fresh-root", ["experiment", EXPERIMENT, "--fresh", "--set", "output_dir=/"], 1, "not deleted"),
    BadInput("fresh-user-directory", ["experiment", EXPERIMENT, "--fresh", "--set", "output_dir=mine"], 1,
             "not deleted: genint did not create it", _user_files("mine/data.csv")),
    BadInput("fresh-run-directory-holding-a-user-file", ["experiment", EXPERIMENT, "--fresh", "--set", "output_dir=run"], 1,
             "it holds files genint did not write (notes.txt)", _marked_run_with_user_file),
    BadInput("fresh-linked-directory", ["experiment", EXPERIMENT, "--fresh", "--set", "output_dir=link"], 1,
             "not a directory genint created",
             lambda root: (_user_files("mine/data.csv")(root), (root / "link").symlink_to(root / "mine"))),
    BadInput("experiment-into-user-directory", ["experiment", EXPERIMENT, "--set", "output_dir=mine"], 1,
             "holds files genint did not write (e.g. 'data.csv')", _user_files("mine/data.csv")),
    BadInput("experiment-output-is-a-file", ["experiment", EXPERIMENT, "--set", "output_dir=taken"], 2,
             "output_dir taken: is a file", _user_files("taken")),
    # output directories of job commands
    BadInput("run-output-is-a-file", ["run", "job.yaml"], 2, "output_dir out: is a file", _both(_job(), _user_files("out"))),
    BadInput("datagen-output-is-a-file", ["datagen", "job.yaml"], 2, "output_dir out: is a file", _both(_job(), _user_files("out"))),
    BadInput("train-output-is-a-file", ["train", "job.yaml"], 2, "output_dir out: is a file", _both(_job(), _user_files("out"))),
    BadInput("run-in-another-jobs-output-dir", ["run", "job.yaml"], 1,
             "output_dir out: holds job 'other''s files; give job 'job' its own output_dir", _both(_job(), _ran_job("other"))),
    BadInput("datagen-in-another-jobs-output-dir", ["datagen", "job.yaml"], 1, "output_dir out: holds job 'other''s files",
             _both(_job(), _ran_job("other"))),
    BadInput("train-in-another-jobs-output-dir", ["train", "job.yaml"], 1, "output_dir out: holds job 'other''s files",
             _both(_job(), _ran_job("other"))),
    BadInput("run-beside-a-config-naming-no-job", ["run", "job.yaml"], 1, "output_dir out: holds a config.yaml that names no job",
             _both(_job(), _ran_job("[1, 2]"))),
    BadInput("directions-output-under-a-file", ["directions", "job.yaml"], 2, "output_dir out/job: is a file, not a directory (out is)",
             _both(_job(output_dir="out/job"), _user_files("out"))),
    BadInput("generator-train-output-is-a-file", ["generator", "train", "job.yaml"], 2, "output_dir out: is a file",
             _both(_job(), _user_files("out"))),
    BadInput("run-store-root-is-a-file", ["run", "job.yaml"], 2, "shards.root store: is a file",
             _both(_job(shards={"root": "store"}), _user_files("store"))),
    BadInput("datagen-weights-missing-writes-no-config", ["datagen", "job.yaml"], 1, "not a directory and not a model name",
             _job(datagen={"actors": 1, "generator": {"weights": "no/such/biggan"}})),
    BadInput("run-biggan-weights-missing-writes-nothing", ["run", "job.yaml"], 1, "not a directory and not a model name",
             _both(_job(datagen={"actors": 1, "generator": {"weights": "no/such/biggan"}},
                        shards={"prepare": {"original": {"source": "digits"}}}), _user_files("digits/0/a.png"))),
    BadInput("examples-destination-is-a-file", ["examples", "digits", "taken"], 2, "examples digits DEST taken: is a file",
             _user_files("taken")),
    # eval flags
    BadInput("eval-unknown-suite", ["eval", "ckpt", "--suite", "imagenet-z", "--data", "."], 2, "--suite 'imagenet-z': choose one of"),
    BadInput("eval-unknown-arch", ["eval", "ckpt", "--suite", "shards", "--data", ".", "--arch", "vgg16"], 2, "--arch 'vgg16': choose one of"),
    BadInput("eval-negative-classes", ["eval", "ckpt", "--suite", "shards", "--data", ".", "--num-classes", "-3"], 2,
             "--num-classes: must be a whole number from 1 to 1000000 (got -3)"),
    BadInput("eval-absurd-classes", ["eval", "ckpt", "--suite", "shards", "--data", ".", "--num-classes", "1000000000000"], 2,
             "--num-classes: must be a whole number from 1 to 1000000"),
    BadInput("eval-unknown-device", ["eval", "ckpt", "--suite", "shards", "--data", ".", "--device", "tpu"], 2,
             "--device 'tpu': choose auto, cpu, cuda or cuda:N"),
    BadInput("eval-absent-cuda", ["eval", "ckpt", "--suite", "shards", "--data", ".", "--device", "cuda:7"], 2,
             "--device 'cuda:7': no such CUDA device"),
    # prepare and imagenet-c flags
    BadInput("prepare-stream-escapes", ["prepare", "src", "out", "--stream", "../escaped"], 2, "--stream: must be 1-100 characters"),
    BadInput("prepare-stream-absolute", ["prepare", "src", "out", "--stream", "/tmp/x"], 2, "--stream: must be 1-100 characters"),
    BadInput("prepare-stream-url", ["prepare", "src", "out", "--stream", "pipe:touch"], 2, "--stream: must be 1-100 characters"),
    BadInput("prepare-no-workers", ["prepare", "src", "out", "--stream", "original", "--workers", "0"], 2,
             "--workers: must be a whole number from 1"),
    BadInput("prepare-negative-seed", ["prepare", "src", "out", "--stream", "original", "--seed", "-1"], 2,
             "--seed: must be a whole number from 0"),
    BadInput("imagenet-c-bad-severity", ["imagenet-c", "build", "src", "out", "--severities", "0,9"], 2,
             "--severities: must be comma-separated severities from 1 to 5"),
    BadInput("imagenet-c-unknown-corruption", ["imagenet-c", "build", "src", "out", "--corruptions", "fog,rain"], 2,
             "--corruptions: unknown rain"),
    BadInput("imagenet-c-no-workers", ["imagenet-c", "build", "src", "out", "--workers", "0"], 2, "--workers: must be a whole number"),
]


@table(CASES)
def test_bad_input(case, tmp_path, monkeypatch, capsys):
    check_bad_input(case, tmp_path, monkeypatch, capsys)
