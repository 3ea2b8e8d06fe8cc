"""The ImageNet-C builder (real ``imagecorruptions``) and the ``imagenet-c`` suite on what it builds."""

from pathlib import Path
from statistics import fmean

import numpy as np
import pytest
from PIL import Image

from tests.test_evaluation_suites import RGB_MODEL, tiny_config, write_folder
from trainers.errors import TrainError
from trainers.evaluation import build_corrupted_set, evaluate
from trainers.evaluation.corruptions import imagecorruptions_module
from trainers.evaluation.suites import alexnet_corruption_errors

CORRUPTIONS = ["gaussian_noise", "contrast"]
SEVERITIES = [1, 3]


@pytest.fixture
def source(tmp_path) -> Path:
    # 40 px images centre-cropped to 32 px (imagecorruptions needs >= 32 px).
    return write_folder(tmp_path / "val", {"a": ["red", "red"], "b": ["green", "blue"]}, side_px=40)


def _build(source: Path, out: Path, **kwargs):
    return build_corrupted_set(source, out, CORRUPTIONS, SEVERITIES, resize_size=None, crop_size=32, **kwargs)


def _tree(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_builder_writes_corruption_severity_class_layout(source, tmp_path):
    out = tmp_path / "val-c"
    report = _build(source, out)
    assert (report.images, report.written, report.already_present) == (4, 16, 0)
    expected = {
        f"{corruption}/{severity}/{folder}/{index}.jpg"
        for corruption in CORRUPTIONS
        for severity in SEVERITIES
        for folder, index in [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    }
    tree = _tree(out)
    assert set(tree) == expected
    with Image.open(out / "gaussian_noise/3/b/1.jpg") as image:
        assert image.format == "JPEG" and image.size == (32, 32)
    # Noise differs by severity; contrast leaves a solid image solid.
    assert tree["gaussian_noise/1/a/0.jpg"] != tree["gaussian_noise/3/a/0.jpg"]

    # A rerun keeps what exists; a deleted output comes back with the same pixels (seeded noise).
    removed = out / "gaussian_noise/3/a/0.jpg"
    removed.unlink()
    again = _build(source, out)
    assert (again.written, again.already_present) == (1, 15)
    assert _tree(out) == tree


@pytest.mark.slow
def test_parallel_build_matches_serial(source, tmp_path):
    _build(source, tmp_path / "serial")
    _build(source, tmp_path / "parallel", workers=2)
    assert _tree(tmp_path / "parallel") == _tree(tmp_path / "serial")


def test_every_imagenet_c_corruption_runs_with_the_shims():
    # glass_blur and fog fail in imagecorruptions 1.1.2 on numpy 2 / scikit-image >= 0.19 without them.
    module = imagecorruptions_module()
    pixels = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    for corruption in alexnet_corruption_errors():
        corrupted = module.corrupt(pixels, corruption_name=corruption, severity=2)
        assert corrupted.shape == pixels.shape and corrupted.dtype == np.uint8, corruption


@pytest.mark.parametrize(
    ("corruptions", "severities", "message"),
    [(["gaussian_noise", "rain"], [1], "corruption 'rain' is not one of"), (["contrast"], [0, 1], "severity must be in 1..5 \\(got 0\\)")],
)
def test_builder_rejects_bad_names_and_severities(source, tmp_path, corruptions, severities, message):
    with pytest.raises(TrainError, match=message):
        build_corrupted_set(source, tmp_path / "out", corruptions, severities)


def test_builder_rejects_images_too_small_to_corrupt(source, tmp_path):
    with pytest.raises(TrainError, match="corruptions need >= 32 px"):
        build_corrupted_set(source, tmp_path / "out", ["contrast"], [1], resize_size=None, crop_size=16)


def test_imagenet_c_suite_reports_errors_ce_and_mce(source, tmp_path):
    out = tmp_path / "val-c"
    _build(source, out)
    # Folders a, b are classes 0, 1: the red images of a are right, b's green right, b's blue wrong.
    result = evaluate(RGB_MODEL, "imagenet-c", out, tiny_config())
    assert [subset.name for subset in result.subsets] == [f"{c}/{s}" for c in sorted(CORRUPTIONS) for s in SEVERITIES]
    assert all(subset.samples == 4 for subset in result.subsets) and result.samples == 16
    contrast = [subset for subset in result.subsets if subset.name.startswith("contrast/")]
    assert [subset.top1 for subset in contrast] == [0.75, 0.75]  # contrast keeps a solid colour's dominant channel
    alexnet = alexnet_corruption_errors()
    for corruption in CORRUPTIONS:
        errors = [1 - s.top1 for s in result.subsets if s.name.startswith(f"{corruption}/")]
        assert result.corruption_errors_percent[corruption] == pytest.approx(100 * fmean(errors) / alexnet[corruption])
    assert result.corruption_errors_percent["contrast"] == pytest.approx(100 * 0.25 / 0.853204)
    assert result.mce_percent == pytest.approx(fmean(result.corruption_errors_percent.values()))
