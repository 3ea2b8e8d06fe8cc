"""The shard-format helpers other packages use: durable writes, cls decoding, index members, a
stream's images as arrays, and the store reference sent to actors. No Ray."""

import io
import json
import pickle

import numpy as np
import pytest
from PIL import Image

from datagen.unit_writer import UnitWriter
from shards.config import ShardStoreConfig, StoreRef
from shards.errors import SampleError, ShardError
from shards.files import TEMP_SUFFIX, write_durably, write_durably_with
from shards.images import read_stream_images
from shards.index import IndexMember, image_and_class, parse_index
from shards.names import index_file_name
from shards.sample import MAX_CLASS_DIGITS, decode_class, encode_class
from tests.conftest import make_sample, write_stream
from tests.store_helpers import FIRST_SHARD, overwrite_member, truncate

# -- write_durably / write_durably_with ------------------------------------------------------


def test_write_durably_replaces_the_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "plan.json"
    path.write_text("old")
    write_durably(path, b"new")
    assert path.read_bytes() == b"new"
    assert sorted(tmp_path.iterdir()) == [path]


def test_write_durably_with_hands_the_writer_an_open_file(tmp_path):
    path = tmp_path / "arrays.npz"
    write_durably_with(path, lambda handle: np.savez(handle, a=np.arange(3)))
    with np.load(path, allow_pickle=False) as data:
        assert data["a"].tolist() == [0, 1, 2]
    assert sorted(tmp_path.iterdir()) == [path]  # np.savez adds no ".npz" to an open file


def test_a_failing_writer_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"old weights")

    def half_then_fail(handle):
        handle.write(b"half of the new")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_durably_with(path, half_then_fail)
    assert path.read_bytes() == b"old weights"
    assert not path.with_name(path.name + TEMP_SUFFIX).exists()


# -- decode_class ---------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [(b"0", 0), (b"7", 7), (b"42", 42), (b" 3\n", 3), (encode_class(999, "k"), 999)])
def test_decode_class_reads_ascii_decimal(raw, expected):
    assert decode_class(raw, "k") == expected


@pytest.mark.parametrize("raw", [b"", b"-1", b"1.5", b"x", b"\xd9\xa3", b"1 2", b"9" * (MAX_CLASS_DIGITS + 1), b"9" * 5000])
def test_decode_class_refuses_anything_else_naming_the_sample(raw):
    with pytest.raises(SampleError, match=r"^sample k7: cls must be a non-negative decimal integer"):
        decode_class(raw, "k7")


# -- image_and_class ------------------------------------------------------------------------------


@pytest.mark.parametrize("image_extension", ["jpg", "png"])
def test_image_and_class_picks_the_members_of_one_sample(image_extension):
    members = [IndexMember("k.cls", 512, 1), IndexMember(f"k.{image_extension}", 1536, 700), IndexMember("k.json", 2560, 30)]
    image, label = image_and_class(members)
    assert (image.extension, image.offset, image.size) == (image_extension, 1536, 700)
    assert (label.extension, label.offset, label.size) == ("cls", 512, 1)


def test_image_and_class_reads_what_the_writer_indexed(stream_dir):
    written = write_stream(stream_dir, 4, max_samples=4)
    index = stream_dir / index_file_name(FIRST_SHARD)
    samples = parse_index(index.read_text(), str(index))
    tar = (stream_dir / FIRST_SHARD).read_bytes()
    for sample, members in zip(written, samples):
        image, label = image_and_class(members)
        extension = "png" if "png" in sample else "jpg"
        assert tar[image.offset : image.offset + image.size] == sample[extension]
        assert decode_class(tar[label.offset : label.offset + label.size], sample["__key__"]) == sample["cls"]


# -- read_stream_images ---------------------------------------------------------------------------


def test_read_stream_images_decodes_every_sample_in_commit_order(stream_dir):
    written = write_stream(stream_dir, 9, max_samples=4)
    images, labels = read_stream_images(stream_dir, image_size=8)
    assert images.shape == (9, 3, 8, 8) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == [sample["cls"] for sample in written]
    png = written[3]["png"]  # lossless: the pixels are known exactly
    expected = np.asarray(Image.open(io.BytesIO(png)).convert("RGB").resize((8, 8), Image.Resampling.BILINEAR))
    assert np.array_equal(images[3], expected.transpose(2, 0, 1))


def test_read_stream_images_of_an_empty_stream_is_empty(tmp_path):
    images, labels = read_stream_images(tmp_path, image_size=8)
    assert images.shape == (0, 3, 8, 8) and labels.shape == (0,)


def test_read_stream_images_refuses_a_damaged_shard_naming_it(stream_dir):
    write_stream(stream_dir, 6, max_samples=3)
    truncate(stream_dir / FIRST_SHARD)
    with pytest.raises(ShardError, match=rf"^1 damaged shards, first {stream_dir / FIRST_SHARD}: shard is \d+ bytes"):
        read_stream_images(stream_dir, image_size=8)


def test_read_stream_images_names_the_sample_of_an_undecodable_image(stream_dir):
    write_stream(stream_dir, 3, max_samples=3)
    overwrite_member(stream_dir, FIRST_SHARD, 1, "jpg", lambda size: b"\xff\xd8\xff" + bytes(size - 3))
    with pytest.raises(ShardError, match=rf"^{FIRST_SHARD}: sample sample00001: undecodable image"):
        read_stream_images(stream_dir, image_size=8)


def test_read_stream_images_names_the_sample_of_a_bad_cls(stream_dir):
    write_stream(stream_dir, 3, max_samples=3)
    overwrite_member(stream_dir, FIRST_SHARD, 2, "cls", lambda size: b"x" * size)
    with pytest.raises(ShardError, match=rf"^{FIRST_SHARD}: sample sample00002: cls must be"):
        read_stream_images(stream_dir, image_size=8)


# -- StoreRef -------------------------------------------------------------------------------------


def test_store_ref_carries_the_job_store_to_actors(tmp_path):
    config = ShardStoreConfig(max_samples_per_shard=7, max_bytes_per_shard=2**20)
    store = StoreRef.of(config, tmp_path / "store", "abc123")
    assert store == StoreRef(tmp_path / "store", 7, 2**20, "abc123")
    assert pickle.loads(pickle.dumps(store)) == store
    assert store.stream_dir("interventional") == tmp_path / "store" / "interventional"
    with pytest.raises(AttributeError):
        store.root = tmp_path  # frozen: every actor sees the same store


def test_a_unit_writer_writes_with_the_store_limits_and_hash(tmp_path):
    store = StoreRef(tmp_path, 2, 10**9, "abc123")
    writer = UnitWriter(store, "interventional", "g0")
    writer.write_unit("u0", lambda start: (make_sample(index) for index in range(start, 5)))
    writer.close()
    lines = [json.loads(line) for line in (tmp_path / "interventional" / "manifest.jsonl").read_text().splitlines()]
    shards = [line for line in lines if line["kind"] == "shard"]
    assert [line["samples"] for line in shards] == [2, 2, 1]
    assert {line["config_hash"] for line in lines} == {"abc123"}
