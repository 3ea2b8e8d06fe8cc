"""The explanation pieces of trainers/explain (seed 004's E[|grad|] and permutation test, GradCAM)
and the direction sweep of cluster/explain.py, on constructed inputs with known answers."""

import numpy as np
import pytest
import torch
from torch import nn

from cluster.explain import direction_latents
from datagen.directions import Directions
from experiments.colored_digits.painter import digit_strokes, paint
from trainers.explain.digit_colours import background_colour, colour_sweep, stroke_coverage
from trainers.explain.fornberg import derivative_matrix, derivative_stencils, differentiate, fornberg_weights
from trainers.explain.gradcam import default_layer, find_layer, gradcam, mask_iou
from trainers.explain.outputs import sweep_outputs
from trainers.explain.gradient import expected_gradient_magnitude, permutation_test, two_sided_p_value
from trainers.explain.sanity import sanity_verdicts
from trainers.errors import TrainError
from trainers.models import build_model


@pytest.mark.parametrize(("grid", "order", "expected"), [
    ([-1, 0, 1], 1, [-1 / 2, 0, 1 / 2]),  # central, accuracy 2
    ([-2, -1, 0, 1, 2], 1, [1 / 12, -2 / 3, 0, 2 / 3, -1 / 12]),  # central, accuracy 4
    ([0, 1, 2], 1, [-3 / 2, 2, -1 / 2]),  # forward, accuracy 2
    ([-2, -1, 0], 1, [1 / 2, -2, 3 / 2]),  # backward, accuracy 2
    ([-1, 0, 1], 2, [1, -2, 1]),  # second derivative
    ([-2, -1, 0, 1, 2], 2, [-1 / 12, 4 / 3, -5 / 2, 4 / 3, -1 / 12]),
])
def test_fornberg_weights_match_the_textbook_stencils(grid, order, expected):
    assert np.allclose(fornberg_weights(grid, 0.0, order), expected, atol=1e-12)


def test_fornberg_weights_on_an_uneven_grid_differentiate_a_quadratic_exactly():
    grid = np.array([0.0, 0.3, 1.1])
    weights = fornberg_weights(grid, 0.5, 1)
    assert weights @ (3 * grid**2 - grid) == pytest.approx(6 * 0.5 - 1)


@pytest.mark.parametrize("accuracy", [2, 4, 6])
def test_the_derivative_matrix_is_exact_for_polynomials_of_its_accuracy_at_every_step(accuracy):
    x = np.arange(12) * 0.25
    matrix = derivative_matrix(12, spacing=0.25, accuracy=accuracy)
    assert np.allclose(matrix @ x**accuracy, accuracy * x ** (accuracy - 1), atol=1e-8)
    sweeps = np.random.default_rng(accuracy).random((3, 2, 12))  # the sliced form the test uses is the same operator
    assert np.allclose(differentiate(sweeps, derivative_stencils(12, 0.25, accuracy)), sweeps @ matrix.T)


def test_expected_gradient_magnitude_of_a_linear_output_is_its_slope():
    steps = np.arange(40)
    assert expected_gradient_magnitude(-0.37 * steps + 2.0) == pytest.approx(0.37)
    # Per unit of the property, with 0.1 of it per step: the slope per unit.
    assert expected_gradient_magnitude(5.0 * steps * 0.1, spacing=0.1) == pytest.approx(5.0)
    assert expected_gradient_magnitude(np.stack([steps * 1.0, steps * 2.0])) == pytest.approx([1.0, 2.0])


def test_a_planted_trend_is_significant_and_iid_noise_is_not():
    rng = np.random.default_rng(7)
    x = np.linspace(0, 1, 64)
    planted = np.stack([0.8 * x + 0.05 * rng.standard_normal(64), np.cos(3 * x) + 0.05 * rng.standard_normal(64)])
    test = permutation_test(planted, permutations=2_000, seed=3)
    assert test.overall_significant and test.per_sweep_significant.all()
    assert (test.per_sweep_statistic < test.per_sweep_null_mean).all()  # smooth: below the shuffles
    noise = permutation_test(rng.standard_normal((4, 64)), permutations=2_000, seed=3)
    assert not noise.overall_significant and noise.overall_p_value > 0.05
    assert (noise.per_sweep_p_value > 0.01).all()
    again = permutation_test(planted, permutations=2_000, seed=3)  # the seed fixes the shuffles
    assert np.array_equal(again.overall_null, test.overall_null)


def test_the_test_is_two_sided_and_a_constant_output_is_never_significant():
    # Two up, two down: every central difference is +-1/2, more change per step than the shuffles show.
    zigzag = np.tile([0.0, 0.0, 1.0, 1.0], 16)
    test = permutation_test(zigzag, permutations=1_000, seed=0)
    assert test.overall_significant and test.overall_statistic > test.overall_null.mean()
    assert permutation_test(np.full(20, 0.4), permutations=500).overall_p_value == 1.0
    # The smallest two-sided p-value of K shuffles is 2 / (K + 1).
    assert two_sided_p_value(np.array(0.0), np.ones((99, 1)))[0] == pytest.approx(2 / 100)


def test_the_seed_sanity_check_gives_its_four_verdicts_with_ten_thousand_shuffles():
    verdicts = {verdict.relationship: verdict for verdict in sanity_verdicts(steps=64, permutations=10_000)}
    assert all(verdict.passed for verdict in verdicts.values())
    assert not verdicts["noise"].significant and verdicts["noise"].p_value > 0.01
    assert all(verdicts[name].p_value < 0.01 for name in ("sine", "parabola", "step"))


def test_a_direction_sweep_changes_exactly_that_latent_coordinate():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((6, 6)))[0].T.astype(np.float32)  # orthonormal rows
    mean = rng.standard_normal(6).astype(np.float32)
    directions = Directions(lat_comp=basis[:3], lat_mean=mean, lat_stdev=np.ones(3, np.float32), act_comp=np.zeros((3, 2)),
                            act_mean=np.zeros(2), act_stdev=np.ones(3), var_ratio=np.ones(3) / 3, generator_id="test")
    latents = torch.from_numpy(rng.standard_normal((4, 6)).astype(np.float32))
    offsets = torch.linspace(-2, 2, 5)
    swept = direction_latents(latents, directions, 1, offsets)
    assert swept.shape == (4, 5, 6)
    coordinates = (swept - torch.from_numpy(mean)) @ torch.from_numpy(basis).T  # (4, 5, 6) in the basis
    before = ((latents - torch.from_numpy(mean)) @ torch.from_numpy(basis).T).unsqueeze(1).expand_as(coordinates)
    assert torch.allclose(coordinates[..., 1], offsets.expand(4, 5), atol=1e-5)
    others = [0, 2, 3, 4, 5]
    assert torch.allclose(coordinates[..., others], before[..., others], atol=1e-5)


def test_digit_colours_are_read_back_and_a_sweep_repaints_only_the_background():
    strokes, _ = digit_strokes(16, count=3)
    backgrounds = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 1.0], [0.5, 0.5, 0.0]])
    images = paint(strokes, backgrounds)
    found = background_colour(images)
    assert torch.allclose(found, backgrounds)
    coverage = stroke_coverage(images, found)
    assert torch.allclose(coverage, strokes, atol=1e-6)
    end = torch.zeros(3, 3)
    white = torch.ones(3, 3)
    sweep = colour_sweep(coverage, found, white, "background", found, end, 5)
    assert sweep.shape == (3, 5, 3, 16, 16)
    assert torch.allclose(sweep[:, 0], images, atol=1e-6) and torch.allclose(sweep[:, -1], paint(strokes, end), atol=1e-6)
    assert torch.allclose(sweep[:, 2], paint(strokes, backgrounds / 2), atol=1e-6)
    strokes_moved = colour_sweep(coverage, found, white, "stroke", white, end, 3)
    assert torch.allclose(strokes_moved[:, -1], (1 - strokes) * backgrounds.view(-1, 3, 1, 1), atol=1e-6)
    with pytest.raises(ValueError, match="cannot be told"):
        stroke_coverage(torch.ones(1, 3, 8, 8), torch.ones(1, 3))


class _Region(nn.Module):
    """Keeps channel 0 in the top-left quarter and channel 1 in the bottom-right (a receptive field each)."""

    def __init__(self) -> None:
        super().__init__()
        mask = torch.zeros(2, 16, 16)
        mask[0, :8, :8], mask[1, 8:, 8:] = 1, 1
        self.register_buffer("mask", mask)

    def forward(self, activation):
        return activation * self.mask


class _TwoRegions(nn.Module):
    """Class 0 is the mean of channel 0 over the top-left quarter, class 1 that of channel 1 over the bottom-right."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 2, 1, bias=False), nn.ReLU(), _Region())
        with torch.no_grad():
            self.features[0].weight.copy_(torch.eye(3)[:2].view(2, 3, 1, 1))
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(2))

    def forward(self, images):
        return self.fc(self.features(images).mean(dim=(2, 3)))


def test_gradcam_finds_the_one_region_the_answer_depends_on():
    model = _TwoRegions().eval()
    images = torch.rand(4, 3, 16, 16) * 0.9 + 0.1
    maps = gradcam(model, images, torch.tensor([0, 1, 0, 1]), find_layer(model, "features"))
    assert maps.shape == (4, 16, 16) and maps.min() >= 0 and maps.max() <= 1
    regions = torch.zeros(4, 16, 16, dtype=torch.bool)
    regions[0::2, :8, :8], regions[1::2, 8:, 8:] = True, True
    assert (maps[~regions] == 0).all() and (maps[regions] > 0).all()
    assert torch.allclose(mask_iou(maps, regions, threshold=0.05), torch.ones(4, dtype=torch.float64))
    assert mask_iou(maps, ~regions, threshold=0.05).max() == 0


def test_gradcam_reads_the_last_conv_block_of_a_resnet_and_the_small_cnn_by_default():
    for arch in ("resnet18", "small_cnn"):
        model = build_model(arch, 3).eval()
        maps = gradcam(model, torch.rand(2, 3, 32, 32), torch.tensor([0, 2]), find_layer(model, default_layer(arch)))
        assert maps.shape == (2, 32, 32) and torch.isfinite(maps).all() and maps.max() <= 1
    with pytest.raises(TrainError, match="no module of that name"):
        find_layer(model, "layer9")


def test_each_output_kind_is_read_along_the_sweeps():
    torch.manual_seed(0)
    model = build_model("small_cnn", 3).eval()
    sweeps, classes = torch.rand(2, 4, 3, 16, 16), torch.tensor([2, 0])
    logits = sweep_outputs(model, lambda images: images, sweeps, classes, "logit", batch_size=3)
    probabilities = sweep_outputs(model, lambda images: images, sweeps, classes, "probability", batch_size=3)
    with torch.inference_mode():
        expected = model(sweeps.view(8, 3, 16, 16)).view(2, 4, 3)
    assert logits.shape == probabilities.shape == (2, 4)
    assert np.allclose(logits, expected[[0, 1], :, [2, 0]].numpy(), atol=1e-5)
    assert np.allclose(probabilities, expected.softmax(dim=2)[[0, 1], :, [2, 0]].numpy(), atol=1e-6)
    cosine = sweep_outputs(model, lambda images: images, sweeps, classes, "cosine")
    assert np.allclose(cosine[:, 0], 1.0) and (cosine <= 1 + 1e-9).all()
