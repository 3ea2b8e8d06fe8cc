"""Transferred samples: contract-valid, labelled like their content, traceable to both images of the pair."""

import io
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.models import vgg19

from datagen.errors import DatagenError
from datagen.transfer.config import TransferConfig
from datagen.transfer.samples import (
    draw_steps,
    transfer_samples,
    transferred_key,
    transferred_sample,
)
from datagen.transfer.vgg import load_vgg_features
from shards.sample import MAX_KEY_CHARS, check_key, encode_sample
from tests.conftest import encoded_image


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> TransferConfig:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vgg") / "vgg19_features.pt"
    torch.save(vgg19().features.state_dict(), path)
    # Few steps keep the stage test quick; the optimisation itself is tested in test_transfer.py.
    return TransferConfig(vgg_weights=str(path), optimise_size=24, save_size=16, min_steps=1, max_steps=3, batch_size=2)


def content_sample(index: int) -> dict:
    """A natural sample as the shard reader returns it: raw bytes in every field."""
    return {
        "__key__": f"n01440764_{index:04d}",
        "jpg": encoded_image(index, size=40),
        "cls": str(index % 5).encode(),
        "json": json.dumps({"stream": "original", "source": f"train/{index}.JPEG"}).encode(),
    }


def style_sample(index: int) -> dict:
    return {
        "__key__": f"int-w0-c{index}-s{index * 7}",
        "png": encoded_image(100 + index, size=32, fmt="PNG"),
        "cls": 900 + index,
        "json": {"stream": "interventional", "class": 900 + index, "seed": index * 7, "components": [3], "offsets": [2.5]},
    }


def test_transferred_sample_is_contract_valid_and_traceable(config: TransferConfig) -> None:
    content, style = content_sample(3), style_sample(1)
    sample = transferred_sample(content, style, torch.rand(3, 24, 24), 42, config, "sha256:abc")
    encoded = encode_sample(sample)
    assert set(encoded) == {"__key__", "jpg", "cls", "json"}
    assert encoded["cls"] == b"3"  # the content label, not the style image's class
    with Image.open(io.BytesIO(encoded["jpg"])) as image:
        assert image.size == (16, 16)
    provenance = json.loads(encoded["json"])
    assert provenance["stream"] == "transferred"
    assert provenance["content_key"] == content["__key__"] and provenance["style_key"] == style["__key__"]
    assert provenance["steps"] == 42 and provenance["vgg_weights"] == "sha256:abc"
    assert provenance["style_weight"] == 1e6 and provenance["content_weight"] == 0.1
    assert provenance["style_provenance"] == style["json"]


def test_png_output_when_configured(config: TransferConfig) -> None:
    png_config = config.model_copy(update={"image_format": "png"})
    sample = transferred_sample(content_sample(1), style_sample(1), torch.rand(3, 24, 24), 1, png_config, "x")
    assert "png" in encode_sample(sample) and "jpg" not in sample


def test_keys_are_unique_deterministic_and_valid() -> None:
    long_key = "k" * MAX_KEY_CHARS
    keys = {transferred_key(content, style) for content in ("a", "b", long_key) for style in ("s1", "s2")}
    assert len(keys) == 6
    assert all(check_key(key) for key in keys)
    assert transferred_key("a", "s1") == transferred_key("a", "s1")
    assert transferred_key("a", "s1").startswith("a-itr-")


def test_steps_are_reproducible_per_pair_and_cover_the_range() -> None:
    config = TransferConfig()
    draws = [draw_steps(f"c{index}", f"s{index}", config) for index in range(400)]
    assert draws == [draw_steps(f"c{index}", f"s{index}", config) for index in range(400)]
    assert min(draws) == 20 and max(draws) == 70
    reseeded = TransferConfig(seed=1)
    assert draws != [draw_steps(f"c{index}", f"s{index}", reseeded) for index in range(400)]


def test_stage_transfers_pairs_in_order(config: TransferConfig) -> None:
    features = load_vgg_features(config.vgg_weights, [*config.style_layers, *config.content_layers], torch.device("cpu"))
    pairs = [(content_sample(index), style_sample(index)) for index in range(3)]  # batches of 2 and 1
    samples = list(transfer_samples(pairs, features, config))
    assert [json.loads(encode_sample(sample)["json"])["content_key"] for sample in samples] == [
        content["__key__"] for content, _ in pairs
    ]
    assert [sample["cls"] for sample in samples] == [0, 1, 2]
    assert [sample["json"]["steps"] for sample in samples] == [
        draw_steps(content["__key__"], style["__key__"], config) for content, style in pairs
    ]


def test_undecodable_image_and_bad_label_fail_in_one_line(config: TransferConfig, tmp_path: Path) -> None:
    features = load_vgg_features(config.vgg_weights, ["conv1_1"], torch.device("cpu"))
    broken = {**content_sample(0), "jpg": b"\xff\xd8\xff not really a jpeg"}
    with pytest.raises(DatagenError, match="does not decode") as caught:
        list(transfer_samples([(broken, style_sample(0))], features, config))
    assert "\n" not in str(caught.value)
    unlabelled = {**content_sample(0), "cls": b"cat"}
    with pytest.raises(DatagenError, match="cls"):
        transferred_sample(unlabelled, style_sample(0), torch.rand(3, 8, 8), 1, config, "x")
