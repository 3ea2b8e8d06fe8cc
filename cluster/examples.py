"""Small example data sets built from what scikit-learn ships (no download)."""

from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def write_digits_imagefolder(destination: Path, image_size: int = 32) -> int:
    """Write scikit-learn's 1,797 handwritten digits as an ImageFolder of RGB PNGs.

    Args:
        destination: created if missing; gets folders ``0`` .. ``9``.
        image_size: side of the upsampled square images, in pixels.

    Returns:
        The number of images written (existing files are kept as they are).
    """
    digits = load_digits()
    written = 0
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target)):
        path = Path(destination) / str(label) / f"digit{index:04d}.png"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        gray = (pixels / 16.0 * 255).astype(np.uint8)
        image = Image.fromarray(gray).resize((image_size, image_size), Image.Resampling.BILINEAR)
        image.convert("RGB").save(path)
        written += 1
    return written
