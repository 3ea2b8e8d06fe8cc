"""``genint explain`` end to end on tiny real inputs: a digits stream in a shard store, a random
small CNN saved as a state_dict, a random CVAE with its directions; and ``--sanity``."""

import json
import math
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from cluster.cli import main
from experiments.colored_digits.painter import coloured_digits
from shards.prepare import prepare_imagefolder
from tests.store_helpers import save_small_classifier
from tests.strategy_helpers import save_tiny_cvae

FAST = ["--steps", "12", "--permutations", "199"]


def _digits_job(root: Path) -> Path:
    images, labels = coloured_digits(16, count=40)
    pixels = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    for index, (image, label) in enumerate(zip(pixels, labels.tolist())):
        (root / "folder" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / "folder" / str(label) / f"d{index}.png")
    prepare_imagefolder(root / "folder", root / "store", "validation", max_samples=16)
    save_small_classifier(root / "clf.pt", 10)
    job = {"name": "digits", "output_dir": str(root / "out"), "shards": {"root": str(root / "store")},
           "train": {"model": "small_cnn", "num_classes": 10, "streams": {"original": {"batch_size": 2}},
                     "data": {"crop_size": 16, "resize_size": 16}},
           "explain": {"stream": "validation", "images": 3, "device": "cpu", "gradcam": {"images": 5, "stroke_iou": True}}}
    (root / "job.yaml").write_text(yaml.safe_dump(job))
    return root / "job.yaml"


def test_background_colour_and_gradcam_write_their_results(tmp_path, capsys):
    config = _digits_job(tmp_path)
    assert main(["explain", str(tmp_path / "clf.pt"), "--config", str(config), "--property", "background_colour",
                 "--gradcam", *FAST]) == 0
    printed = capsys.readouterr().out
    assert "explain background_colour: E[|grad|]" in printed and "mean IoU with the stroke masks" in printed
    out = tmp_path / "out" / "explain"
    result = json.loads((out / "background_colour.json").read_text())
    assert result["steps"] == 12 and result["permutations"] == 199 and len(result["images"]) == 3
    assert all(len(image["outputs"]) == 12 and 0 <= image["p_value"] <= 1 for image in result["images"])
    assert math.isfinite(result["expected_gradient_magnitude"]) and result["expected_gradient_magnitude"] > 0
    assert "| all |" in (out / "background_colour.md").read_text()
    cam = json.loads((out / "gradcam.json").read_text())
    assert cam["layer"] == "features.4" and len(cam["iou"]) == 5 and 0 <= cam["mean_iou"] <= 1
    for figure in ("background_colour.png", "gradcam.png"):
        with Image.open(out / figure) as image:
            assert image.format == "PNG" and image.width > 100


def test_a_direction_sweep_runs_through_the_jobs_generator(tmp_path, capsys):
    weights, directions = save_tiny_cvae(tmp_path)
    save_small_classifier(tmp_path / "clf.pt", 3)
    job = {"name": "cvae", "output_dir": str(tmp_path / "out"),
           "datagen": {"device": "cpu", "generator": {"kind": "cvae", "weights": str(weights)}, "directions": {"path": str(directions)}},
           "train": {"model": "small_cnn", "num_classes": 3, "streams": {"original": {"batch_size": 2}},
                     "data": {"crop_size": 8, "resize_size": 8}},
           "explain": {"images": 2, "device": "cpu", "output": "logit"}}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    assert main(["explain", str(tmp_path / "clf.pt"), "--config", str(tmp_path / "job.yaml"), "--property", "direction:1",
                 *FAST, "--output", str(tmp_path / "explained")]) == 0
    result = json.loads((tmp_path / "explained" / "direction-1.json").read_text())
    assert result["property"] == "direction:1" and result["output"] == "logit" and len(result["images"]) == 2
    outputs = np.array([image["outputs"] for image in result["images"]])
    assert outputs.shape == (2, 12) and np.isfinite(outputs).all()
    assert np.ptp(outputs, axis=1).min() > 0  # moving along a direction moves the generated image and the logit


def test_sanity_prints_the_four_verdicts(capsys):
    assert main(["explain", "--sanity", "--permutations", "1999"]) == 0
    printed = capsys.readouterr().out
    assert all(name in printed for name in ("noise", "sine", "parabola", "step")) and "all four verdicts as expected" in printed
    assert "WRONG" not in printed
