"""The digits pointer-value benchmark's data (seed 003): the systematic split's exclusions, grids that
show the digits they claim from disjoint image pools, and the augmentation's swapped grids against
the causal model's counterfactual labels."""

import torch
from sklearn.datasets import load_digits

from experiments.digits_pvr.grids import CELL, HELD_OUT, image_pools, in_training_distribution, make_grids, needs_held_out, render, swap_cells
from experiments.colored_digits.painter import digit_strokes
from trainers.causal_models import causal_model

SEED = 3


def test_the_split_rules_on_constructed_grids():
    digits = torch.tensor([[0, 0, 0, 1], [5, 1, 0, 1], [5, 0, 4, 1], [5, 0, 0, 7], [2, 1, 4, 0], [8, 0, 6, 9]])
    assert in_training_distribution(digits).tolist() == [True, False, False, False, False, False]
    # the test needs the pointed-at cell held out: row 1 points at bottom-left (0), row 4 at top-right (1), row 5 at bottom-right (9)
    assert needs_held_out(digits).tolist() == [False, False, True, False, True, True]


def test_training_and_validation_grids_omit_every_held_out_digit_and_show_all_others():
    for split in ("train", "validation"):
        grids = make_grids(split, 1500, SEED)
        assert in_training_distribution(grids.digits).all()
        for cell in range(4):
            shown = set(grids.digits[:, cell].tolist())
            assert shown == set(range(10)) - set(HELD_OUT.get(cell, ()))
        assert not needs_held_out(grids.digits).any()


def test_test_grids_all_point_at_a_held_out_digit_and_cover_every_one():
    grids = make_grids("test", 1500, SEED)
    assert needs_held_out(grids.digits).all()
    assert torch.equal(grids.labels, causal_model("pointer_value").output(grids.digits))
    assert set(grids.labels.tolist()) == set(range(10))  # every held-out digit is some cell's label
    assert not in_training_distribution(grids.digits).any()


def test_grids_show_their_digits_from_disjoint_image_pools():
    targets = torch.tensor(load_digits().target)
    pools = {split: set(indices.tolist()) for split, indices in image_pools(targets.numpy(), SEED).items()}
    assert not (pools["train"] & pools["validation"] or pools["train"] & pools["test"] or pools["validation"] & pools["test"])
    strokes, _ = digit_strokes(CELL)
    for split in ("train", "test"):
        grids = make_grids(split, 50, SEED)
        assert set(grids.image_indices.flatten().tolist()) <= pools[split]
        assert torch.equal(targets[grids.image_indices], grids.digits)
        assert grids.images.shape == (50, 3, 2 * CELL, 2 * CELL)
        # bottom-left cell of grid 7 is its image's strokes, in every channel
        assert torch.equal(grids.images[7, :, CELL:, :CELL], strokes[grids.image_indices[7, 2], 0].expand(3, -1, -1))
    assert torch.equal(make_grids("train", 20, SEED).images, make_grids("train", 20, SEED).images)


def test_swapped_cells_are_the_grid_of_the_counterfactual_digits_and_its_label():
    base, source = make_grids("train", 6, SEED), make_grids("validation", 6, SEED)
    to, read = torch.tensor([0, 1, 2, 3, 0, 3]), torch.tensor([0, 1, 2, 3, 2, 1])  # the last two across positions
    swapped = swap_cells(base.images, source.images, to, read)
    rows = torch.arange(6)
    images = base.image_indices.clone()
    images[rows, to] = source.image_indices[rows, read]
    strokes, targets = digit_strokes(CELL)
    assert torch.equal(swapped, render(strokes, images))
    labels = causal_model("pointer_value").counterfactual(base.digits, source.digits, to, read)
    assert torch.equal(labels, causal_model("pointer_value").output(targets[images]))
