"""Pointer-value grids from scikit-learn's digits and the seed's systematic split.

A grid is four digit images in a 2x2 layout, each cell 16 px (the 8x8 digits upsampled), a 32 px
grey image as 3 channels. Its causal variables are the four cells' digits (top-left, top-right,
bottom-left, bottom-right); the label is the pointed-at digit (trainers.causal_models.pointer_value).

The split is Zhang et al.'s as the seed restates it: training removes every grid whose top-right is
in {1, 2, 3}, bottom-left in {4, 5, 6} or bottom-right in {0, 7, 8, 9}. The test holds the grids
whose pointed-at cell holds one of that cell's held-out digits, so every test label needs a
combination training never showed (our reading of the seed's 0.00 % for the standard arm).
Validation is drawn like training. The digit images are split first, so no image is in two splits.
"""

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from experiments.colored_digits.painter import digit_strokes
from trainers.causal_models import pointed_position, pointer_value
from trainers.interventions import Alignment, swap_sites

CELL = 16
POSITIONS = ("top_left", "top_right", "bottom_left", "bottom_right")
HELD_OUT = {1: (1, 2, 3), 2: (4, 5, 6), 3: (0, 7, 8, 9)}  # cell index -> digits training never shows there
SPLITS = ("train", "validation", "test")
CELLS = Alignment("input", "quadrants")  # the four cells of an image, in POSITIONS order
VALIDATION_FRACTION, TEST_FRACTION = 0.15, 0.25  # of the 1,797 digit images


def held_out_mask() -> torch.Tensor:
    """(4 cells, 10 digits) bool: True where the training split never shows that digit in that cell."""
    mask = torch.zeros(len(POSITIONS), 10, dtype=torch.bool)
    for cell, digits in HELD_OUT.items():
        mask[cell, list(digits)] = True
    return mask


def in_training_distribution(digits: torch.Tensor) -> torch.Tensor:
    """(N, 4) digits -> (N,) bool: no cell holds one of its held-out digits."""
    return ~held_out_mask().gather(1, digits.T).T.any(1)


def needs_held_out(digits: torch.Tensor) -> torch.Tensor:
    """(N, 4) digits -> (N,) bool: the pointed-at cell holds one of its held-out digits (the test's grids)."""
    pointed = pointed_position(digits)
    return held_out_mask()[pointed, digits.gather(1, pointed[:, None]).squeeze(1)]


@dataclass(frozen=True)
class Grids:
    """One split's grids: images (N, 3, 32, 32) in [0, 1], digits (N, 4), labels (N,), image_indices (N, 4) into the 1,797."""

    images: torch.Tensor
    digits: torch.Tensor
    labels: torch.Tensor
    image_indices: torch.Tensor


def image_pools(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Disjoint, class-stratified indices of the digit images each split draws its cells from."""
    indices = np.arange(len(labels))
    rest, test = train_test_split(indices, test_size=TEST_FRACTION, stratify=labels, random_state=seed)
    train, validation = train_test_split(rest, test_size=VALIDATION_FRACTION / (1 - TEST_FRACTION), stratify=labels[rest],
                                         random_state=seed)
    return {"train": train, "validation": validation, "test": test}


def sample_digits(split: str, count: int, rng: np.random.Generator) -> torch.Tensor:
    """(count, 4) cell digits: training and validation uniform over each cell's allowed digits; the test
    uniform over all, then the pointed-at cell's digit drawn from its held-out ones."""
    if split == "test":
        digits = torch.from_numpy(rng.integers(10, size=(count, len(POSITIONS))))
        pointed = pointed_position(digits)
        for cell, held in HELD_OUT.items():
            rows = pointed == cell
            digits[rows, cell] = torch.from_numpy(rng.choice(held, size=int(rows.sum())))
        return digits
    allowed = ~held_out_mask()
    return torch.stack([torch.from_numpy(rng.choice(np.flatnonzero(allowed[cell].numpy()), size=count))
                        for cell in range(len(POSITIONS))], 1)


def render(strokes: torch.Tensor, image_indices: torch.Tensor) -> torch.Tensor:
    """(N, 4) image indices -> (N, 3, 2 CELL, 2 CELL) grids of those digits' strokes (grey, as 3 channels)."""
    cells = strokes[image_indices]  # (N, 4, 1, CELL, CELL)
    top, bottom = torch.cat([cells[:, 0], cells[:, 1]], 3), torch.cat([cells[:, 2], cells[:, 3]], 3)
    return torch.cat([top, bottom], 2).expand(-1, 3, -1, -1).contiguous()


def make_grids(split: str, count: int, seed: int) -> Grids:
    """``count`` grids of ``split`` (one of SPLITS), a function of its arguments alone."""
    strokes, labels = digit_strokes(CELL)
    pool = image_pools(labels.numpy(), seed)[split]
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    digits = sample_digits(split, count, rng)
    image_indices = torch.empty_like(digits)
    for digit in range(10):
        of_digit = pool[labels.numpy()[pool] == digit]
        chosen = digits == digit
        image_indices[chosen] = torch.from_numpy(rng.choice(of_digit, size=int(chosen.sum())))
    return Grids(render(strokes, image_indices), digits, pointer_value(digits), image_indices)


def swap_cells(base: torch.Tensor, source: torch.Tensor, base_cells: torch.Tensor, source_cells: torch.Tensor) -> torch.Tensor:
    """The augmentation arm's inputs: row r of ``base`` with its cell ``base_cells[r]`` replaced by source row r's
    cell ``source_cells[r]`` (label it with the causal model's counterfactual). The same swap as the
    intervention's, on the pixels instead of a feature map."""
    return swap_sites(base, source, CELLS.indices(base.shape[1:]), base_cells, source_cells)
