"""Transfer of interventions onto natural images (X_itr): batched Gatys style transfer with VGG-19."""

from datagen.transfer.config import TransferConfig
from datagen.transfer.gatys import transfer_batch
from datagen.transfer.samples import draw_steps, transfer_samples, transferred_sample
from datagen.transfer.vgg import VggFeatures, load_vgg_features

__all__ = [
    "TransferConfig",
    "VggFeatures",
    "draw_steps",
    "load_vgg_features",
    "transfer_batch",
    "transfer_samples",
    "transferred_sample",
]
