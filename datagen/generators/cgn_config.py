"""Settings of the counterfactual generative network: its architecture (saved with the weights) and its training.

Defaults follow the authors' MNIST code (seed 001): 32-d noise and a 10-d label embedding per
mechanism, generator width 32, a 512-wide MLP discriminator with dropout 0.4, LSGAN, Adam 2e-4 with
betas (0.5, 0.999), binary mask loss 0.1. The default batch is 64, not 16 (the Colored Digits CGN arm is
timed with it); on two CPU cores a step at 16 costs about a quarter of one at 64 (0.12 s against 0.42 s
at width 32), so batch 16 buys four times the steps for the same images, which the coloured-digits
benchmark takes (issue 15).
"""

from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_serializer,
    model_validator,
)

from datagen.limits import MAX_BATCH_SIZE, MAX_CLASSES, MAX_DIMENSIONS, MAX_ITERATIONS, MAX_SEED
from datagen.transfer.config import VGG19_CONV_NAMES

# Convolutions over full-size feature maps: 256 px already costs seconds per CPU step.
MAX_CGN_IMAGE_SIZE_PX = 256


class CgnArchitecture(BaseModel):
    """The three mechanisms' shape; written to ``config.json`` beside the weights so a load rebuilds it exactly."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    num_classes: PositiveInt = Field(default=10, le=MAX_CLASSES)
    image_size: PositiveInt = Field(default=32, le=MAX_CGN_IMAGE_SIZE_PX, multiple_of=4,
                                    description="side of the square RGB images, px (two 2x upsamplings from image_size / 4)")
    noise_dim: PositiveInt = Field(default=32, le=MAX_DIMENSIONS, description="noise per mechanism")
    label_embedding_dim: PositiveInt = Field(default=10, le=MAX_DIMENSIONS)
    width: PositiveInt = Field(default=32, le=MAX_DIMENSIONS, description="channels of the last upsampling block (the authors' ngf)")
    texture_width: PositiveInt | None = Field(default=None, le=MAX_DIMENSIONS, description=(
        "the foreground and background mechanisms' width; None uses width. At equal width they hold 4/5 of the "
        "generator's convolution work, and flat colours need little of it: half the width quarters their convolutions "
        "(a step about 25 % faster on 2 cores), buying the shape more steps in the same time"))

    @model_serializer(mode="wrap")
    def _unset_texture_width_left_out(self, handler):
        # Left out when unset, so config.json and the generator id of every CGN saved before the field stay as they were.
        fields = handler(self)
        if self.texture_width is None:
            fields.pop("texture_width", None)
        return fields


class CgnTrainConfig(BaseModel):
    """How ``train_cgn`` fits the network: LSGAN against a class-conditional MLP discriminator, plus
    the mask losses (size near ``mask_target``, binary entropy, edge mass) and a Gram texture loss."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: CgnArchitecture = Field(default_factory=CgnArchitecture)
    epochs: PositiveInt = Field(default=30, le=MAX_ITERATIONS)
    batch_size: PositiveInt = Field(default=64, le=MAX_BATCH_SIZE)
    learning_rate: PositiveFloat = 2e-4
    betas: tuple[float, float] = Field(default=(0.5, 0.999), description="Adam's (beta1, beta2), both in [0, 1)")
    discriminator: Literal["mlp", "conv"] = Field(default="mlp", description=(
        "mlp: the authors' MLP over [flattened image; label embedding]; conv: three strided convolutions and a class "
        "projection (Miyato & Koyama, 2018), which sees a stroke's shape and ties it to the class even where a "
        "class-tied colour alone tells an MLP the class (on 1,080 digits the MLP lets classes swap shapes)"))
    discriminator_width: PositiveInt = Field(default=512, le=MAX_DIMENSIONS, description="hidden units of the MLP; the conv one's feature width")
    discriminator_channels: PositiveInt = Field(default=32, le=MAX_DIMENSIONS, description="conv: channels of the first convolution (doubled twice)")
    discriminator_dropout: float = Field(default=0.4, ge=0, lt=1)
    binary_weight: NonNegativeFloat = Field(default=0.1, description="binary entropy of the mask (0.1 coloured, 0.3 double/wildlife)")
    mask_target: float = Field(default=0.3, gt=0, lt=1, description="tau: the mask's mean the mask loss keeps it near")
    mask_tolerance: float = Field(default=0.1, ge=0, lt=0.5, description="the mask loss is zero within tau +- this")
    mask_weight: NonNegativeFloat = Field(default=1.0, description="weight of the mask-size loss")
    edge_px: PositiveInt = Field(default=3, le=MAX_DIMENSIONS, description="width of the border band of the edge loss, px")
    edge_weight: NonNegativeFloat = Field(default=1.0, description="weight of the edge loss: the share of mask mass in the border band")
    texture_weight: NonNegativeFloat = Field(default=0.0, description="weight of the Gram texture loss; > 0 needs texture_features")
    texture_features: Path | None = Field(default=None, description=(
        "a state_dict of torchvision's vgg19() or vgg19().features whose conv taps give the Gram matrices "
        "(no pretrained VGG can be downloaded here: the digits benchmarks save a random-initialised one)"))
    texture_layers: tuple[str, ...] = Field(default=("conv1_1", "conv1_2", "conv2_1"), min_length=1,
                                            description="VGG-19 conv outputs whose Gram matrices the texture loss compares")
    seed: NonNegativeInt = Field(default=0, le=MAX_SEED, description="seeds initialisation, shuffling and every noise draw")
    threads: NonNegativeInt = Field(default=0, le=1024, description=(
        "torch's intra-op threads while training; 0 keeps torch's default. On cores shared with other work, 1 is "
        "faster: a second OpenMP thread spins waiting for a busy core"))

    @model_validator(mode="after")
    def _settings_fit(self) -> "CgnTrainConfig":
        if not all(0 <= beta < 1 for beta in self.betas):
            raise ValueError(f"betas must both lie in [0, 1) (got {list(self.betas)})")
        if self.texture_weight > 0 and self.texture_features is None:
            raise ValueError("texture_weight > 0 needs texture_features, a VGG-19 state_dict file (or set texture_weight: 0)")
        unknown = sorted(set(self.texture_layers) - set(VGG19_CONV_NAMES))
        if unknown:
            raise ValueError(f"texture_layers {unknown} are not VGG-19 conv layers (use names like {list(VGG19_CONV_NAMES[:3])})")
        if self.discriminator == "conv" and self.model.image_size % 8:
            raise ValueError(f"discriminator conv halves the image three times: model.image_size must be a multiple of 8 "
                             f"(got {self.model.image_size})")
        if 2 * self.edge_px >= self.model.image_size:
            raise ValueError(f"edge_px must be < model.image_size / 2 (got {self.edge_px} for {self.model.image_size} px)")
        return self
