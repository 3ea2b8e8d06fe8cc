"""Shards read back identically through webdataset, DALI's reader and GNU tar."""

import subprocess

import pytest
import webdataset
from nvidia.dali import fn, pipeline_def

from shards.reader import committed_shards
from tests.conftest import write_stream


@pytest.fixture
def written(stream_dir):
    samples = write_stream(stream_dir, 23, max_samples=5)
    return samples, [path for path, _ in committed_shards(stream_dir)]


def _expected(samples):
    return [(s["__key__"], str(s["cls"]).encode(), s.get("jpg") or s.get("png")) for s in samples]


def test_webdataset_reads_keys_labels_and_bytes(written):
    samples, paths = written
    dataset = webdataset.WebDataset([str(p) for p in paths], shardshuffle=False, empty_check=False)
    seen = [(s["__key__"], s["cls"], s.get("jpg") or s.get("png")) for s in dataset]
    assert seen == _expected(samples)


def test_tar_lists_every_member(written):
    samples, paths = written
    names = []
    for path in paths:
        names += subprocess.run(["tar", "-tf", str(path)], check=True, capture_output=True, text=True).stdout.split()
    expected = [f"{s['__key__']}.{ext}" for s in samples for ext in sorted(k for k in s if k != "__key__")]
    assert names == expected


def _read_with_dali(paths, index_paths, count):
    @pipeline_def(batch_size=count, num_threads=1, device_id=None)
    def pipeline():
        return tuple(fn.readers.webdataset(
            paths=[str(p) for p in paths], index_paths=index_paths, ext=["jpg;png", "cls", "json"],
            missing_component_behavior="error", random_shuffle=False, name="reader",
        ))

    pipe = pipeline()
    pipe.build()
    assert pipe.epoch_size("reader") == count
    images, labels, provenance = pipe.run()
    return [
        (bytes(provenance.at(i)), bytes(labels.at(i)), bytes(images.at(i)))
        for i in range(count)
    ]


def test_dali_reads_with_our_index_as_with_its_own_inference(written):
    samples, paths = written
    ours = _read_with_dali(paths, [str(p.with_suffix(".idx")) for p in paths], len(samples))
    inferred = _read_with_dali(paths, None, len(samples))
    assert ours == inferred
    keys = [provenance for provenance, _, _ in ours]
    assert keys == [f'{{"index":{s["json"]["index"]},"key":"{s["__key__"]}"}}'.encode() for s in samples]
    assert [(label, image) for _, label, image in ours] == [(label, image) for _, label, image in _expected(samples)]
