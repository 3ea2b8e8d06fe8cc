"""Counterfactual-pair samples (a partner image ``cf.png``/``cf.jpg`` and class ``cf.cls`` beside the sample's):
the contract refuses broken pairs, a written pair verifies and reads back identically through webdataset, DALI's
webdataset reader and tar, and DALI augments a sample and its partner with the same crop and flip."""

import io
import subprocess

import numpy as np
import pytest
import webdataset
from nvidia.dali import fn, pipeline_def
from PIL import Image

from shards.errors import SampleError
from shards.reader import committed_shards
from shards.sample import encode_sample
from shards.verify import verify_store
from shards.writer import ShardWriter
from tests.conftest import encoded_image, make_sample
from trainers.data.augment import paired_train_transform, train_transform
from trainers.data.config import LoaderConfig

COUNT = 9


def pair_sample(index: int) -> dict:
    sample = make_sample(index)
    return {**sample, "cf.png": encoded_image(1000 + index, fmt="PNG"), "cf.cls": (sample["cls"] + 1) % 3}


@pytest.mark.parametrize("change, message", [
    ({"cf.cls": 0}, "its counterfactual partner has the sample's own class 0; a pair's classes must differ"),
    ({"cf.cls": None}, r"a counterfactual partner is one image field of \('cf.jpg', 'cf.png'\) and 'cf.cls' \(got \['cf.png'\]\)"),
    ({"cf.jpg": encoded_image(5)}, "a counterfactual partner is one image field"),
    ({"cf.png": b"not a png"}, "sample00000: cf.png field is not encoded PNG bytes"),
])
def test_broken_pairs_are_refused(change, message):
    sample = {**pair_sample(0), **change}
    sample = {name: value for name, value in sample.items() if value is not None}
    with pytest.raises(SampleError, match=message):
        encode_sample(sample)


@pytest.fixture
def pairs(stream_dir):
    samples = [pair_sample(index) for index in range(COUNT)]
    with ShardWriter(stream_dir, "original", "w0", "testhash", max_samples=4) as writer:
        for sample in samples:
            writer.write(sample)
    return samples, [path for path, _ in committed_shards(stream_dir)]


def expected(samples) -> list[tuple]:
    return [(s["__key__"], s.get("jpg") or s["png"], str(s["cls"]).encode(), s["cf.png"], str(s["cf.cls"]).encode()) for s in samples]


def test_a_pair_verifies_and_reads_back_identically_through_webdataset_dali_and_tar(pairs, stream_dir):
    samples, paths = pairs
    findings, counts = verify_store(stream_dir.parent)
    assert len(paths) == 3 and findings == [] and counts["samples"] == COUNT

    dataset = webdataset.WebDataset([str(path) for path in paths], shardshuffle=False, empty_check=False)
    assert [(s["__key__"], s.get("jpg") or s["png"], s["cls"], s["cf.png"], s["cf.cls"]) for s in dataset] == expected(samples)

    @pipeline_def(batch_size=COUNT, num_threads=1, device_id=None)
    def pipeline():
        return tuple(fn.readers.webdataset(paths=[str(p) for p in paths], index_paths=[str(p.with_suffix(".idx")) for p in paths],
                                           ext=["jpg;png", "cls", "cf.jpg;cf.png", "cf.cls"], missing_component_behavior="error"))

    pipe = pipeline()
    pipe.build()
    outputs = pipe.run()
    dali = [tuple(bytes(output.at(row)) for output in outputs) for row in range(COUNT)]
    assert dali == [fields[1:] for fields in expected(samples)]

    members = []
    for path in paths:
        names = subprocess.run(["tar", "-tf", str(path)], check=True, capture_output=True, text=True).stdout.split()
        members += [(name, subprocess.run(["tar", "-xOf", str(path), name], check=True, capture_output=True).stdout) for name in names]
    by_name = dict(members)
    assert len(members) == 5 * COUNT
    for key, image, label, partner, partner_label in expected(samples):
        image_name = f"{key}.jpg" if f"{key}.jpg" in by_name else f"{key}.png"
        assert (by_name[image_name], by_name[f"{key}.cls"], by_name[f"{key}.cf.png"], by_name[f"{key}.cf.cls"]) == \
            (image, label, partner, partner_label)


def png(pixels: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8)


@pytest.mark.parametrize("shared", [True, False])
def test_a_pair_is_augmented_with_the_same_crop_and_flip(shared):
    """The partner is the sample's negative, so an aligned pair's augmented pixels sum to white everywhere;
    two independent augmentations (the control) do not."""
    rng = np.random.default_rng(0)
    images = [(rng.random((32, 32, 3)) * 255).astype(np.uint8) for _ in range(16)]
    loader = LoaderConfig(crop_size=16, resize_size=16, crop_area=(0.2, 0.6), mean=(0, 0, 0), std=(1, 1, 1))

    @pipeline_def(batch_size=16, num_threads=1, device_id=None, seed=3)
    def pipeline():
        encoded = fn.external_source(source=lambda: [png(image) for image in images], batch=True)
        partner = fn.external_source(source=lambda: [png(255 - image) for image in images], batch=True)
        if shared:
            return paired_train_transform(encoded, partner, "standard", loader, "cpu", crop_seed=11)
        return train_transform(encoded, "standard", loader, "cpu"), train_transform(partner, "standard", loader, "cpu")

    pipe = pipeline()
    pipe.build()
    augmented, partners = (np.stack([np.array(output.at(row)) for row in range(16)]) for output in pipe.run())
    gap = 255 * np.abs(augmented + partners - 1).max(axis=(1, 2, 3))  # pixels come out in [0, 1] with mean 0, std 1
    if shared:
        assert gap.max() <= 1.01, gap  # one grey level: the resize rounds each image to uint8
    else:
        assert (gap > 20).sum() >= 12, gap
