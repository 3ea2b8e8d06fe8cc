"""Coloured digits: scikit-learn's 8x8 handwritten digits as RGB images with a coloured background.

A small, download-free stand-in for the Colored-MNIST setting of GenInt's controlled experiment.
``coloured_digits`` ties one colour to each class (c and c + 5 share one, so telling them apart
needs the shape too); ``digit_strokes`` and ``paint`` let other setups choose backgrounds freely.
"""

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

# Whole RGB channels on or off, as in the reference Colored-MNIST; white is left out so strokes stay visible.
BACKGROUND_COLOURS = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1]], dtype=torch.float32)


def digit_strokes(image_size: int = 32, count: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits' stroke intensities, upsampled bilinearly from 8x8.

    Args:
        image_size: side of the square output.
        count: take the first ``count`` of the 1,797 digits; None takes all.

    Returns:
        strokes: float32 (N, 1, image_size, image_size) in [0, 1]; labels: int64 (N,) in 0..9.
    """
    digits = load_digits()
    strokes = torch.tensor(digits.images[:count], dtype=torch.float32).unsqueeze(1) / 16
    labels = torch.tensor(digits.target[:count], dtype=torch.long)
    return F.interpolate(strokes, size=(image_size, image_size), mode="bilinear", align_corners=False).clamp(0, 1), labels


def paint(strokes: torch.Tensor, backgrounds: torch.Tensor) -> torch.Tensor:
    """White strokes over one RGB background colour per image: (N, 1, S, S), (N, 3) -> (N, 3, S, S)."""
    return strokes + (1 - strokes) * backgrounds.view(-1, 3, 1, 1)


def coloured_digits(image_size: int = 32, count: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """White digit strokes over the background colour of their class.

    Returns:
        images: float32 (N, 3, image_size, image_size) in [0, 1]; labels: int64 (N,) in 0..9.
    """
    strokes, labels = digit_strokes(image_size, count)
    return paint(strokes, BACKGROUND_COLOURS[labels % len(BACKGROUND_COLOURS)]), labels
