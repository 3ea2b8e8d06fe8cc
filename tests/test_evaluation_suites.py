"""End-to-end evaluation through real DALI CPU pipelines on tiny folders and shard streams.

Most tests score ``CornerColourModel``, whose prediction is fixed by construction (the class of
the dominant channel at the image's top-left pixel), so the expected accuracy is known exactly.
"""

import io
import json
import re
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from rich.console import Console

from cluster.cli import main
from shards.writer import ShardWriter
from trainers.data.config import LoaderConfig
from trainers.errors import TrainError
from trainers.models import build_model
from trainers.evaluation import (
    EvalConfig,
    EvalResult,
    evaluate,
    format_table,
    write_json,
)

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255)}
SIDE_PX = 24


class CornerColourModel(torch.nn.Module):
    """Logits from the top-left pixel: channel c votes for ``channel_classes[c]``.

    Every other class gets a low logit that decreases with its index, so top-k has no ties.
    """

    def __init__(self, channel_classes: list[int], num_classes: int):
        super().__init__()
        self.channel_classes = channel_classes
        self.register_buffer("base", -10.0 - 1e-3 * torch.arange(num_classes, dtype=torch.float32))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.base.expand(images.shape[0], -1).clone()
        logits[:, self.channel_classes] = images[:, :, 0, 0]
        return logits


def solid_image(colour: str, border: str | None = None, border_px: int = 2, side_px: int = SIDE_PX) -> Image.Image:
    """A solid colour square, optionally framed by a border of another colour."""
    image = Image.new("RGB", (side_px, side_px), COLOURS[border or colour])
    image.paste(Image.new("RGB", (side_px - 2 * border_px,) * 2, COLOURS[colour]), (border_px, border_px))
    return image


def write_folder(root: Path, contents: dict[str, list[str]], **image_args) -> Path:
    """``root/<folder>/<i>.png`` for each folder's list of colours."""
    for folder, colours in contents.items():
        (root / folder).mkdir(parents=True)
        for index, colour in enumerate(colours):
            solid_image(colour, **image_args).save(root / folder / f"{index}.png")
    return root


def tiny_config(**overrides) -> EvalConfig:
    return EvalConfig(loader=LoaderConfig(resize_size=20, crop_size=20, num_threads=1), batch_size=4, **overrides)


RGB_MODEL = CornerColourModel([0, 1, 2], 3)


def test_imagefolder_scores_the_constructed_accuracy(tmp_path):
    # Folders sort to classes a=0 (red), b=1 (green), c=2 (blue); two images sit in the wrong class.
    root = write_folder(tmp_path / "set", {"a": ["red", "red", "green"], "b": ["green", "green"], "c": ["blue", "red"]})
    result = evaluate(RGB_MODEL, "imagefolder", root, tiny_config())
    assert result.samples == 7 and [s.samples for s in result.subsets] == [7]
    assert result.top1 == pytest.approx(5 / 7)
    assert result.top5 == 1.0  # k clipped to the 3 classes


def test_shard_stream_reads_labels_from_cls(tmp_path):
    colours = ["red", "green", "blue", "red", "green", "blue", "green"]
    labels = [0, 1, 2, 0, 1, 0, 2]  # the last two disagree with their colour
    stream = tmp_path / "store" / "original"
    with ShardWriter(stream, "original", "w0", "testhash", max_samples=3) as writer:
        for index, (colour, label) in enumerate(zip(colours, labels)):
            buffer = io.BytesIO()
            solid_image(colour).save(buffer, format="JPEG", quality=95)
            writer.write({"__key__": f"s{index}", "jpg": buffer.getvalue(), "cls": label, "json": {}})
    result = evaluate(RGB_MODEL, "shards", stream, tiny_config())
    assert result.samples == 7
    assert result.top1 == pytest.approx(5 / 7)
    # The store root (a directory of streams) reads the same.
    assert evaluate(RGB_MODEL, "shards", tmp_path / "store", tiny_config()).top1 == pytest.approx(5 / 7)


def test_random_resnet_scores_folder_and_shards_in_range(tmp_path):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=3)
    root = write_folder(tmp_path / "set", {"a": ["red"] * 3, "b": ["green"] * 2, "c": ["blue"] * 4})
    stream = tmp_path / "store" / "original"
    with ShardWriter(stream, "original", "w0", "testhash", max_samples=4) as writer:
        for index in range(6):
            buffer = io.BytesIO()
            solid_image(list(COLOURS)[index % 3]).save(buffer, format="PNG")
            writer.write({"__key__": f"s{index}", "png": buffer.getvalue(), "cls": index % 3, "json": {}})
    for suite, data, count in [("imagefolder", root, 9), ("shards", stream, 6)]:
        result = evaluate(model, suite, data, tiny_config())
        assert result.samples == count
        assert 0.0 <= result.top1 <= result.top5 <= 1.0


def test_imagenet_v2_labels_are_folder_names(tmp_path):
    # Channels vote for classes 7, 3, 999; folders named by class index.
    root = write_folder(tmp_path / "v2", {"7": ["red", "red"], "3": ["green"], "999": ["blue", "green"]})
    result = evaluate(CornerColourModel([7, 3, 999], 1000), "imagenet-v2", root, tiny_config())
    assert result.samples == 5 and result.top1 == pytest.approx(4 / 5)


def test_objectnet_maps_folders_and_crops_the_border(tmp_path):
    # red votes 559 (chair's second index), green 954 (banana), blue 1 (nothing); every image
    # has a green 2-px frame, so without the border crop every image looks like a banana.
    model = CornerColourModel([559, 954, 1], 1000)
    root = write_folder(
        tmp_path / "objectnet", {"chair": ["red", "red"], "banana": ["green"], "backpack": ["blue"]}, border="green"
    )
    cropped = evaluate(model, "objectnet", root, tiny_config())
    assert cropped.samples == 4 and cropped.top1 == pytest.approx(3 / 4)
    framed = evaluate(model, "objectnet", root, tiny_config(objectnet_border_px=0))
    assert framed.top1 == pytest.approx(1 / 4)
    assert [ref.value for ref in cropped.references if ref.model == "ResNet-18 GenInt"] == [22.07]


def test_objectnet_unmapped_folder_fails_or_is_skipped(tmp_path):
    root = write_folder(tmp_path / "objectnet", {"banana": ["green"], "tv_remote_not_mapped": ["red"]})
    model = CornerColourModel([559, 954, 1], 1000)
    with pytest.raises(TrainError, match="tv_remote_not_mapped: not one of the 113 ObjectNet classes"):
        evaluate(model, "objectnet", root, tiny_config())
    result = evaluate(model, "objectnet", root, tiny_config(objectnet_unmapped="skip"))
    assert result.samples == 1 and result.top1 == 1.0 and result.skipped_folders == ["tv_remote_not_mapped"]


def test_genint_eval_takes_the_advice_its_objectnet_error_gives(tmp_path, capsys):
    # The error names a flag; passing it evaluates the mapped folders and records the skipped one.
    root = write_folder(tmp_path / "objectnet", {"banana": ["green"], "tv_remote_not_mapped": ["red"]})
    torch.save(build_model("small_cnn", 1000).state_dict(), tmp_path / "w.pt")
    command = ["eval", str(tmp_path / "w.pt"), "--suite", "objectnet", "--data", str(root), "--arch", "small_cnn",
               "--num-classes", "1000", "--device", "cpu", "--json", str(tmp_path / "eval.json")]
    assert main(command) == 1
    advice = re.search(r"--objectnet-unmapped skip", capsys.readouterr().err)
    assert advice and not (tmp_path / "eval.json").exists()
    assert main([*command, advice.group(0).split()[0], "skip"]) == 0
    written = json.loads((tmp_path / "eval.json").read_text())
    assert written["samples"] == 1 and written["skipped_folders"] == ["tv_remote_not_mapped"]


@pytest.mark.parametrize(
    ("suite", "layout", "message"),
    [
        ("imagefolder", None, "does not exist"),
        ("imagefolder", {"a": []}, "no images in its class folders"),
        ("imagenet-v2", {"cat": ["red"]}, "must be class indices 0..999"),
        ("imagenet-c", {"fog": ["red"]}, "fog: no subdirectories \\(expected severity folders 1..5\\)"),
        ("imagenet-c", {"fog/6": ["red"]}, "fog/6: ImageNet-C severity folders must be named 1..5"),
        ("shards", {"a": ["red"]}, "no manifest.jsonl"),
        ("no-such-suite", {"a": ["red"]}, "unknown eval suite 'no-such-suite'"),
    ],
)
def test_bad_input_is_one_train_error(tmp_path, suite, layout, message):
    root = tmp_path / "data"
    if layout is not None:
        write_folder(root, layout)
    with pytest.raises(TrainError, match=message) as raised:
        evaluate(RGB_MODEL, suite, root, tiny_config())
    assert "\n" not in str(raised.value)


def test_label_outside_the_model_outputs_is_a_train_error(tmp_path):
    root = write_folder(tmp_path / "set", {str(index): ["red"] for index in range(4)})
    with pytest.raises(TrainError, match="label 3 but the model has 3 outputs"):
        evaluate(RGB_MODEL, "imagefolder", root, tiny_config())


def test_undecodable_image_is_a_train_error(tmp_path):
    root = write_folder(tmp_path / "set", {"a": ["red"]})
    (root / "a" / "broken.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(TrainError, match=r"DALI failed on samples 0..3 \(first: .*/a/0.png\): nvImageCodec failure") as raised:
        evaluate(RGB_MODEL, "imagefolder", root, tiny_config())
    assert "\n" not in str(raised.value)


def test_report_table_and_json(tmp_path):
    root = write_folder(tmp_path / "objectnet", {"chair": ["red"], "banana": ["red"]})
    result = evaluate(CornerColourModel([559, 954, 1], 1000), "objectnet", root, tiny_config())
    console = Console(record=True, width=200)
    console.print(format_table(result))
    text = console.export_text()
    assert re.search(r"│ all\s+│\s+2 │\s+50.00 │\s+100.00 │", text)
    assert re.search(r"│ paper: ResNet-152 GenInt\+Transfer\s+│\s+│\s+34.69 │", text)
    path = tmp_path / "out" / "eval.json"
    write_json(result, path)
    assert EvalResult.model_validate(json.loads(path.read_text())) == result


@pytest.mark.gpu
def test_cuda_mixed_decode_scores_like_cpu(tmp_path):
    root = write_folder(
        tmp_path / "objectnet", {"chair": ["red", "red"], "banana": ["green"], "backpack": ["blue"]}, border="green"
    )
    model = CornerColourModel([559, 954, 1], 1000)
    on_cpu = evaluate(model, "objectnet", root, tiny_config(), "cpu")
    on_gpu = evaluate(model, "objectnet", root, tiny_config(), "cuda")
    assert (on_gpu.samples, on_gpu.top1, on_gpu.top5) == (on_cpu.samples, on_cpu.top1, on_cpu.top5) == (4, 0.75, 0.75)
