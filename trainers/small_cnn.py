"""A small convolutional classifier for small images (the Colored Digits experiment's 32 px digits).

A ResNet-18 step on 32 px images takes about half a second on a 2-core CPU; three conv blocks
take a tenth of that, which is what lets four arms x three seeds train in minutes there.
"""

from torch import nn


def _block(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False), nn.BatchNorm2d(channels_out), nn.ReLU(inplace=True))


class SmallConvNet(nn.Module):
    """Three conv-BN-ReLU blocks (32, 64, 128 channels; the first two halve the size), global average pool, ``fc``."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(_block(3, 32), nn.MaxPool2d(2), _block(32, 64), nn.MaxPool2d(2), _block(64, 128), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(128, num_classes)  # named like torchvision's heads, so fine-tuning swaps it the same way

    def forward(self, images):
        return self.fc(self.features(images).flatten(1))
