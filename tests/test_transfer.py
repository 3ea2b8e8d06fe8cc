"""Batched Gatys style transfer: optimisation behaviour, per-image independence, weights loading, errors."""

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from torchvision.models import vgg19

from datagen.errors import DatagenError
from datagen.transfer.config import TransferConfig
from datagen.transfer.gatys import (
    compute_targets,
    style_and_content_losses,
    transfer_batch,
)
from datagen.transfer.reference import transfer_with_torch_lbfgs
from datagen.transfer.vgg import VggFeatures, load_vgg_features

SIZE = 32


@pytest.fixture(scope="module")
def vgg_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vgg") / "vgg19_features.pt"
    torch.save(vgg19().features.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def config(vgg_path: Path) -> TransferConfig:
    return TransferConfig(vgg_weights=str(vgg_path), optimise_size=SIZE, save_size=SIZE // 2)


@pytest.fixture(scope="module")
def features(config: TransferConfig) -> VggFeatures:
    return load_vgg_features(config.vgg_weights, [*config.style_layers, *config.content_layers], torch.device("cpu"))


def images(count: int, seed: int) -> torch.Tensor:
    """Smooth random images (blurred noise), so content has structure a network can recognise."""
    noise = torch.rand(count, 3, SIZE // 4, SIZE // 4, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(noise, size=SIZE, mode="bilinear", align_corners=False)


def test_style_loss_falls_while_content_stays_recognisable(features: VggFeatures, config: TransferConfig) -> None:
    # One pair repeated with growing step counts: rows are independent (tested below), so row k
    # is the pair after steps[k] iterations, all from one batched run.
    steps = [0, 3, 6, 12]
    content, style = images(1, seed=1).expand(4, -1, -1, -1), images(1, seed=2).expand(4, -1, -1, -1)
    targets = compute_targets(features, content, style, config)
    result = transfer_batch(content, style, steps, features, config)
    style_loss, content_loss = style_and_content_losses(features, result, targets, config)
    assert torch.all(style_loss[1:] < style_loss[:-1]), style_loss
    assert style_loss[-1] < 0.5 * style_loss[0], style_loss
    # Recognisable: the content loss ends far below that of a noise image, and pixels still correlate.
    noise = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    noise_content_loss = style_and_content_losses(features, noise, targets.select(torch.tensor([0])), config)[1]
    assert content_loss[-1] < 0.25 * noise_content_loss, (content_loss, noise_content_loss)
    assert torch.corrcoef(torch.stack([result[-1].flatten(), content[0].flatten()]))[0, 1] > 0.8


def test_each_image_in_a_batch_matches_running_it_alone(features: VggFeatures, config: TransferConfig) -> None:
    content, style = images(3, seed=4), images(3, seed=5)
    steps = [4, 11, 0]  # different counts: pairs leave the batch at different iterations
    batched = transfer_batch(content, style, steps, features, config)
    for index, count in enumerate(steps):
        alone = transfer_with_torch_lbfgs(content[index : index + 1], style[index : index + 1], count, features, config)
        # Batched and single convolutions round differently and L-BFGS amplifies that over the
        # steps (a 1e-6 nudge to the input moves the result by ~1e-2 after 40 steps), so the
        # comparison runs few steps; 1e-3 is a quarter of one 8-bit level.
        torch.testing.assert_close(batched[index], alone[0], atol=1e-3, rtol=0)
    assert not torch.allclose(batched[1], content[1], atol=1e-2)  # the images did move
    torch.testing.assert_close(batched[2], content[2])


def test_one_torch_lbfgs_over_a_batch_couples_the_images(features: VggFeatures, config: TransferConfig) -> None:
    """Why the batched optimiser exists: the naive batch fails the tolerance the test above holds."""
    content, style = images(2, seed=4), images(2, seed=5)
    coupled = transfer_with_torch_lbfgs(content, style, 4, features, config)
    alone = transfer_with_torch_lbfgs(content[:1], style[:1], 4, features, config)
    assert (coupled[0] - alone[0]).abs().max() > 1e-2


def test_result_does_not_depend_on_batch_companions(features: VggFeatures, config: TransferConfig) -> None:
    content, style = images(3, seed=6), images(3, seed=7)
    together = transfer_batch(content, style, [4, 4, 4], features, config)
    other_companions = torch.cat([content[:1], images(1, seed=8)]), torch.cat([style[:1], images(1, seed=9)])
    apart = transfer_batch(*other_companions, [4, 7], features, config)
    torch.testing.assert_close(together[0], apart[0], atol=1e-3, rtol=0)


def test_random_weights_load_by_path(vgg_path: Path, features: VggFeatures) -> None:
    reference = vgg19().features
    reference.load_state_dict(torch.load(vgg_path, weights_only=True))
    assert features.weights_id.startswith("sha256:")
    # Truncated after conv3_1 (index 10), the deepest default tap.
    assert len(features.layers) == 11
    torch.testing.assert_close(features.layers[10].weight, reference[10].weight)
    image = images(1, seed=10)
    expected = reference[:11]((image - features.mean) / features.std)
    torch.testing.assert_close(features(image)["conv3_1"], expected)


@pytest.mark.slow
def test_whole_vgg19_checkpoint_loads(tmp_path: Path, vgg_path: Path) -> None:
    whole = vgg19()
    whole.features.load_state_dict(torch.load(vgg_path, weights_only=True))
    torch.save(whole.state_dict(), tmp_path / "vgg19.pt")
    loaded = load_vgg_features(str(tmp_path / "vgg19.pt"), ["conv1_1"], torch.device("cpu"))
    assert len(loaded.layers) == 1
    torch.testing.assert_close(loaded.layers[0].weight, whole.features[0].weight)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda state: state.pop("0.weight"), r"missing.*0\.weight"),
        (lambda state: state.update({"extra.weight": torch.zeros(1)}), r"unexpected.*extra\.weight"),
    ],
)
def test_checkpoint_with_wrong_keys_fails_in_one_line(tmp_path: Path, vgg_path: Path, edit, expected: str) -> None:
    state = torch.load(vgg_path, weights_only=True)
    edit(state)
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(DatagenError, match=expected) as caught:
        load_vgg_features(str(tmp_path / "broken.pt"), ["conv1_1"], torch.device("cpu"))
    assert "\n" not in str(caught.value)


def test_checkpoint_with_wrong_shape_fails_in_one_line(tmp_path: Path, vgg_path: Path) -> None:
    state = torch.load(vgg_path, weights_only=True)
    state["0.bias"] = torch.zeros(3)
    torch.save(state, tmp_path / "shape.pt")
    with pytest.raises(DatagenError, match=r"0\.bias \(3,\)") as caught:
        load_vgg_features(str(tmp_path / "shape.pt"), ["conv1_1"], torch.device("cpu"))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("path", ["no/such/vgg19.pt", "IMAGENET1K_V2"])
def test_missing_weights_path_fails_in_one_line(path: str) -> None:
    with pytest.raises(DatagenError, match="no such file") as caught:
        load_vgg_features(path, ["conv1_1"], torch.device("cpu"))
    assert "\n" not in str(caught.value) and "IMAGENET1K_V1" in str(caught.value)


def test_non_checkpoint_file_fails_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    with pytest.raises(DatagenError, match="not a loadable state_dict") as caught:
        load_vgg_features(str(tmp_path / "notes.txt"), ["conv1_1"], torch.device("cpu"))
    assert "\n" not in str(caught.value)


def test_unknown_tap_fails(vgg_path: Path) -> None:
    with pytest.raises(DatagenError, match="conv9_9"):
        load_vgg_features(str(vgg_path), ["conv9_9"], torch.device("cpu"))


@pytest.mark.parametrize(
    ("content_shape", "style_shape", "steps", "match"),
    [
        ((2, 3, SIZE, SIZE), (3, 3, SIZE, SIZE), [1, 1], "batches must match"),
        ((2, 1, SIZE, SIZE), (2, 1, SIZE, SIZE), [1, 1], "RGB"),
        ((2, 3, SIZE, SIZE), (2, 3, SIZE, SIZE), [1], "step counts"),
        ((2, 3, SIZE, SIZE), (2, 3, SIZE, SIZE), [1, -1], "step counts"),
    ],
)
def test_bad_batches_fail_in_one_line(features: VggFeatures, config: TransferConfig, content_shape, style_shape, steps, match) -> None:
    with pytest.raises(DatagenError, match=match) as caught:
        transfer_batch(torch.rand(content_shape), torch.rand(style_shape), steps, features, config)
    assert "\n" not in str(caught.value)


def test_config_defaults_follow_the_paper_and_bad_values_fail() -> None:
    config = TransferConfig()
    assert (config.style_weight, config.content_weight, config.lr, config.max_iter) == (1e6, 0.1, 1.0, 10)
    assert (config.min_steps, config.max_steps, config.optimise_size, config.save_size) == (20, 70, 512, 256)
    assert config.content_layers == ["conv2_2"] and config.style_layers[-1] == "conv3_1"
    for bad in ({"style_weight": -1}, {"style_layers": ["conv6_1"]}, {"min_steps": 80}, {"lbfgs": True}):
        with pytest.raises(ValidationError):
            TransferConfig(**bad)
