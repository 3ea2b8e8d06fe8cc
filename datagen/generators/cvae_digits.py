"""Coloured digits: scikit-learn's 8x8 handwritten digits as RGB images whose background colour is tied to the class.

A small, download-free stand-in for the Colored-MNIST setting of GenInt's controlled experiment.
Classes c and c + 5 share a background colour, so a model that tells them apart must use the
digit's shape as well as the colour.
"""

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

# Whole RGB channels on or off, as in the reference Colored-MNIST; white is left out so strokes stay visible.
BACKGROUND_COLOURS = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1]], dtype=torch.float32)


def coloured_digits(image_size: int = 32, count: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """White digit strokes over the background colour of their class.

    Args:
        image_size: side of the square output, upsampled bilinearly from 8x8.
        count: take the first ``count`` of the 1,797 digits; None takes all.

    Returns:
        images: float32 (N, 3, image_size, image_size) in [0, 1]; labels: int64 (N,) in 0..9.
    """
    digits = load_digits()
    strokes = torch.tensor(digits.images[:count], dtype=torch.float32).unsqueeze(1) / 16
    labels = torch.tensor(digits.target[:count], dtype=torch.long)
    strokes = F.interpolate(strokes, size=(image_size, image_size), mode="bilinear", align_corners=False).clamp(0, 1)
    background = BACKGROUND_COLOURS[labels % len(BACKGROUND_COLOURS)].view(-1, 3, 1, 1)
    return strokes + (1 - strokes) * background, labels
