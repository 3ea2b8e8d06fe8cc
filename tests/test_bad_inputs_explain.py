"""The bad-input suite, ``genint explain`` part: an unknown property, a property the job cannot
produce, K or N out of range, a missing checkpoint, stream or GradCAM layer. Each row: its exit
code, one line, no traceback, nothing written (see tests/bad_input_helpers.py)."""

from pathlib import Path

import yaml
from PIL import Image

from shards.prepare import prepare_imagefolder

from tests.bad_input_helpers import BadInput, check_bad_input, table
from tests.store_helpers import save_small_classifier

JOB = {"name": "job", "output_dir": "out", "train": {"model": "small_cnn", "num_classes": 3, "streams": {"original": {"batch_size": 4}}}}
EXPLAIN = ["explain", "clf.pt", "--config", "job.yaml"]


def _job(**fields):
    """A setup writing job.yaml (JOB with ``fields`` replacing its top-level keys) and a random small CNN at clf.pt."""
    def setup(root: Path) -> None:
        (root / "job.yaml").write_text(yaml.safe_dump(JOB | fields))
        save_small_classifier(root / "clf.pt", 3)
    return setup


def _store_job():
    """A setup with a one-stream store (store/original) and the job naming it."""
    def setup(root: Path) -> None:
        _job(shards={"root": "store"})(root)
        (root / "folder" / "0").mkdir(parents=True)
        Image.new("RGB", (8, 8), (200, 0, 0)).save(root / "folder" / "0" / "a.png")
        prepare_imagefolder(root / "folder", root / "store", "original")
    return setup


CASES = [
    BadInput("unknown-property", [*EXPLAIN, "--property", "hue"], 2, "--property 'hue': unknown property; choose direction:<k>",
             _job()),
    BadInput("direction-without-directions-file", [*EXPLAIN, "--property", "direction:0"], 1,
             "--property direction:0: the job has no directions file", _job()),
    BadInput("direction-not-a-number", [*EXPLAIN, "--property", "direction:x"], 2, "--property 'direction:x': unknown property", _job()),
    BadInput("permutations-too-few", [*EXPLAIN, "--property", "background_colour", "--permutations", "10"], 2,
             "--permutations: must be a whole number from 199 to 1000000 (got 10)", _job()),
    BadInput("permutations-too-many", ["explain", "--sanity", "--permutations", "9999999"], 2, "--permutations: must be a whole number"),
    BadInput("steps-too-few", [*EXPLAIN, "--property", "background_colour", "--steps", "2"], 2,
             "--steps: must be a whole number from 3 to 10000 (got 2)", _job()),
    BadInput("steps-not-a-number", ["explain", "--sanity", "--steps", "many"], 2, "--steps: must be a whole number"),
    BadInput("steps-below-accuracy", [*EXPLAIN, "--property", "background_colour", "--steps", "4", "--set", "explain.accuracy=4"], 2,
             "steps must be >= accuracy + 1 = 5", _job()),
    BadInput("config-steps-out-of-range", [*EXPLAIN, "--property", "background_colour", "--set", "explain.steps=1"], 2,
             "explain.steps", _job()),
    BadInput("no-property-or-gradcam", EXPLAIN, 2, "give --property NAME, --gradcam or both", _job()),
    BadInput("no-checkpoint", ["explain", "--property", "background_colour"], 2, "give CKPT and --config CONFIG (or --sanity)"),
    BadInput("sanity-with-a-model", ["explain", "clf.pt", "--sanity"], 2, "--sanity: takes no CKPT"),
    BadInput("checkpoint-missing", ["explain", "absent.pt", "--config", "job.yaml", "--property", "background_colour"], 1,
             "weights 'absent.pt': not a local file", _job()),
    BadInput("stream-missing", [*EXPLAIN, "--property", "background_colour"], 2, "explain.stream 'original': the store out/shards holds no streams", _job()),
    BadInput("stream-not-in-store", [*EXPLAIN, "--property", "background_colour", "--set", "explain.stream=nope"], 2,
             "explain.stream 'nope': not in the store store (streams there: original)", _store_job()),
    BadInput("gradcam-unknown-layer", [*EXPLAIN, "--gradcam", "--set", "explain.gradcam.layer=layer9"], 1,
             "GradCAM layer 'layer9': the model has no module of that name", _job()),
    BadInput("colour-out-of-range", [*EXPLAIN, "--property", "background_colour", "--set", "explain.colours.end=[2,0,0]"], 2,
             "channels in [0, 1]", _job()),
    BadInput("output-is-a-file", [*EXPLAIN, "--property", "background_colour", "--output", "job.yaml"], 2,
             "explain output directory job.yaml: is a file", _job()),
]


@table(CASES)
def test_bad_input(case, tmp_path, monkeypatch, capsys):
    check_bad_input(case, tmp_path, monkeypatch, capsys)
