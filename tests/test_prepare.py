"""prepare: ImageFolder -> shuffled shards; resumable without duplicates; bad images skipped."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits, load_sample_images

from cluster.cli import main
from shards.errors import ShardError
from shards.manifest import Manifest
from shards.prepare import CLASSES_FILE, prepare_imagefolder
from shards.reader import committed_shards, iter_samples
from shards.verify import verify_store


@pytest.fixture(scope="module")
def imagefolder(tmp_path_factory) -> Path:
    """Digits as JPEGs in folders 'zero'..'four', scikit-learn's two photos in 'photos', one corrupt file."""
    root = tmp_path_factory.mktemp("imagefolder")
    digits = load_digits()
    names = ["zero", "one", "two", "three", "four"]
    for index in range(150):
        label = int(digits.target[index])
        if label >= len(names):
            continue
        folder = root / names[label]
        folder.mkdir(exist_ok=True)
        pixels = (digits.images[index] / 16 * 255).astype(np.uint8)
        Image.fromarray(pixels).resize((24, 24)).convert("RGB").save(folder / f"d{index}.jpg", quality=90)
    photos = root / "photos"
    photos.mkdir()
    for number, image in enumerate(load_sample_images().images):
        Image.fromarray(image).resize((64, 48)).save(photos / f"photo{number}.bmp")
    (root / "three" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def _source_images(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {"three/corrupt.jpg"}


def _read_all(stream_dir: Path) -> list[dict]:
    return list(iter_samples([path for path, _ in committed_shards(stream_dir)]))


def test_prepare_writes_every_readable_image_once(imagefolder, tmp_path):
    report = prepare_imagefolder(imagefolder, tmp_path, "original", unit_size=16, max_samples=10, workers=2)
    samples = _read_all(tmp_path / "original")
    sources = [json.loads(sample["json"])["source"] for sample in samples]
    assert sorted(sources) == sorted(_source_images(imagefolder))
    assert report.written == len(samples)
    assert [entry["path"] for entry in report.skipped] == ["three/corrupt.jpg"]
    classes = json.loads((tmp_path / "original" / CLASSES_FILE).read_text())
    assert classes == {"four": 0, "one": 1, "photos": 2, "three": 3, "two": 4, "zero": 5}
    for sample in samples:
        provenance = json.loads(sample["json"])
        assert int(sample["cls"]) == classes[provenance["class_name"]] == provenance["class"]
    photos = [sample for sample in samples if json.loads(sample["json"])["class_name"] == "photos"]
    assert all("png" in sample for sample in photos)  # BMP re-encoded losslessly
    assert sources != sorted(sources)  # shuffled
    assert verify_store(tmp_path)[0] == []


def test_interrupted_prepare_resumes_without_duplicates_or_gaps(imagefolder, tmp_path):
    class Crash(Exception):
        pass

    def crash_after_40(handled, total):
        if handled == 40:
            raise Crash

    with pytest.raises(Crash):
        prepare_imagefolder(imagefolder, tmp_path, "original", unit_size=16, max_samples=5, on_progress=crash_after_40)
    progress = Manifest(tmp_path / "original").unit_progress()
    assert any(not state.done and state.samples > 0 for state in progress.values())  # a unit was cut mid-way

    report = prepare_imagefolder(imagefolder, tmp_path, "original", unit_size=16, max_samples=5)
    keys = [sample["__key__"] for sample in _read_all(tmp_path / "original")]
    assert len(keys) == len(set(keys)) == len(_source_images(imagefolder))
    assert report.already_committed + report.written == len(keys)
    assert report.already_committed > 0
    assert verify_store(tmp_path)[0] == []

    fresh = tmp_path / "fresh"
    prepare_imagefolder(imagefolder, fresh, "original", unit_size=16, max_samples=5)
    assert keys == [sample["__key__"] for sample in _read_all(fresh / "original")]  # same order as uninterrupted


def test_rerun_with_another_seed_is_refused(imagefolder, tmp_path):
    prepare_imagefolder(imagefolder, tmp_path, "original", unit_size=64)
    with pytest.raises(ShardError, match="already prepared with"):
        prepare_imagefolder(imagefolder, tmp_path, "original", seed=1, unit_size=64)


def test_imagenet_wnid_folders_keep_imagenet_indices(tmp_path):
    for wnid in ("n01443537", "n01440764", "n15075141"):  # goldfish, tench, toilet tissue
        (tmp_path / "src" / wnid).mkdir(parents=True)
        Image.new("RGB", (8, 8), "red").save(tmp_path / "src" / wnid / "a.png")
    report = prepare_imagefolder(tmp_path / "src", tmp_path / "out", "original")
    assert report.classes == {"n01440764": 0, "n01443537": 1, "n15075141": 999}
    labels = {json.loads(s["json"])["class_name"]: int(s["cls"]) for s in _read_all(tmp_path / "out" / "original")}
    assert labels == report.classes


def test_cli_lists_skipped_files(imagefolder, tmp_path, capsys):
    assert main(["prepare", str(imagefolder), str(tmp_path), "--stream", "original"]) == 0
    captured = capsys.readouterr()
    assert "skipped three/corrupt.jpg:" in captured.err
    assert f"wrote {len(_source_images(imagefolder))} samples" in captured.out


def test_cli_rejects_a_missing_source(tmp_path, capsys):
    assert main(["prepare", str(tmp_path / "absent"), str(tmp_path), "--stream", "original"]) == 1
    assert capsys.readouterr().err.strip() == f"genint: error: {tmp_path / 'absent'}: source is not a directory"


@pytest.mark.parametrize("stream", ["../escaped", "/tmp/absolute", "a/b", "", "x" * 101])
def test_a_bad_stream_name_is_refused_before_anything_is_written(imagefolder, tmp_path, stream):
    out = tmp_path / "store" / "out"
    with pytest.raises(ShardError, match="stream .* is invalid"):
        prepare_imagefolder(imagefolder, out, stream)
    assert list(tmp_path.iterdir()) == []


def test_a_source_with_no_readable_image_leaves_nothing(tmp_path):
    for name in ("a/1.jpg", "b/2.png"):
        (tmp_path / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / name).write_bytes(b"not an image")
    with pytest.raises(ShardError, match="none of its 2 image files could be read"):
        prepare_imagefolder(tmp_path / "src", tmp_path / "out", "original")
    assert not (tmp_path / "out").exists()


def test_an_output_inside_the_source_is_refused(imagefolder, tmp_path):
    with pytest.raises(ShardError, match="the output is inside the source tree"):
        prepare_imagefolder(imagefolder, imagefolder / "shards", "original")
    assert not (imagefolder / "shards").exists()


def test_units_of_only_unreadable_files_are_recorded_done(imagefolder, tmp_path):
    # unit_size 1: the corrupt file's unit commits no sample, yet a rerun must find it done.
    report = prepare_imagefolder(imagefolder, tmp_path, "original", unit_size=1, max_samples=50)
    progress = Manifest(tmp_path / "original").unit_progress()
    assert len(progress) == report.units and all(state.done for state in progress.values())
    rerun = prepare_imagefolder(imagefolder, tmp_path, "original", unit_size=1, max_samples=50)
    assert rerun.written == 0 and rerun.already_committed == report.written
