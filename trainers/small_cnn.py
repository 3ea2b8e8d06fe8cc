"""Small convolutional classifiers for small images (the digits experiments' 32 px inputs).

A ResNet-18 step on 32 px images takes about half a second on a 2-core CPU; three conv blocks
take a tenth of that, which is what lets several arms x three seeds train in minutes there.
"""

from torch import nn


def _block(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False), nn.BatchNorm2d(channels_out), nn.ReLU(inplace=True))


def _features(pooled_size: int, width: int = 32) -> nn.Sequential:
    """Three conv-BN-ReLU blocks (``width``, twice and four times that many channels; the first two halve the
    size), then an average pool to ``pooled_size``."""
    return nn.Sequential(_block(3, width), nn.MaxPool2d(2), _block(width, 2 * width), nn.MaxPool2d(2), _block(2 * width, 4 * width),
                         nn.AdaptiveAvgPool2d(pooled_size))


class SmallConvNet(nn.Module):
    """The three conv blocks, global average pool, ``fc``."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = _features(1)
        self.fc = nn.Linear(128, num_classes)  # named like torchvision's heads, so fine-tuning swaps it the same way

    def forward(self, images):
        return self.fc(self.features(images).flatten(1))


class GridConvNet(nn.Module):
    """The three conv blocks at half the width (16, 32, 64 channels: a quarter of the cost) pooled to 2 x 2,
    one cell per quadrant of the image, then a hidden layer and ``fc``.

    For inputs whose label depends on which quadrant holds what (the pointer-value grids): the small
    CNN's global pool averages positions away, and its three 3x3 convs see at most 18 px of a 32 px
    grid, so it cannot fit such a training set (about 50 % training accuracy on digits-PVR).
    """

    def __init__(self, num_classes: int, hidden: int = 256) -> None:
        super().__init__()
        self.features = _features(2, width=16)
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4, hidden), nn.ReLU(inplace=True))
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, images):
        return self.fc(self.hidden(self.features(images)))
