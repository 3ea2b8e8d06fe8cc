"""Settings of the class-conditional VAE: its architecture (saved with the weights) and its training."""

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from datagen.limits import MAX_BATCH_SIZE, MAX_CLASSES, MAX_DIMENSIONS, MAX_ITERATIONS, MAX_SEED

# An MLP over flattened pixels: at 256 px its first layer already holds 3 * 256**2 * hidden_dim weights.
MAX_CVAE_IMAGE_SIZE_PX = 256


class CvaeArchitecture(BaseModel):
    """The network's shape; written to ``config.json`` beside the weights so a load rebuilds it exactly.

    Defaults follow the GenInt Colored-MNIST reference: MLPs over 32x32x3 inputs, hidden 1000,
    latent 2, label embedding 5.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    num_classes: PositiveInt = Field(default=10, le=MAX_CLASSES)
    image_size: PositiveInt = Field(default=32, le=MAX_CVAE_IMAGE_SIZE_PX, description="side of the square RGB images, in pixels")
    hidden_dim: PositiveInt = Field(default=1000, le=MAX_DIMENSIONS, description="width of the encoder's and decoder's hidden layer")
    latent_dim: PositiveInt = Field(default=2, le=MAX_DIMENSIONS)
    label_embedding_dim: PositiveInt = Field(default=5, le=MAX_DIMENSIONS)
    label_modulation: bool = Field(default=False, description=(
        "the label also scales and shifts the decoder's hidden layer (FiLM, like BigGAN's class-conditional batch norm)"))


class CvaeAugmentation(BaseModel):
    """Random affine jitter of each training image, drawn anew every epoch (none by default).

    With a few thousand images the encoder can give every image its own spot in the latent and
    the decoder can memorise them (a KL near log N nats); jittered copies make that impossible, so
    the latent keeps what varies across images and the prior's samples land where the decoder
    was trained. Pixels moved in from outside repeat the image's border.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    rotation_degrees: NonNegativeFloat = Field(default=0.0, le=180, description="rotation drawn uniformly in +- this")
    translate_fraction: NonNegativeFloat = Field(default=0.0, le=0.5, description="shift drawn uniformly in +- this share of the side")
    scale_range: tuple[PositiveFloat, PositiveFloat] = Field(default=(1.0, 1.0), description="zoom drawn uniformly in [low, high]")

    @model_validator(mode="after")
    def _scale_is_a_range(self) -> "CvaeAugmentation":
        if self.scale_range[0] > self.scale_range[1]:
            raise ValueError(f"scale_range must be [low, high] (got {list(self.scale_range)})")
        return self

    @property
    def active(self) -> bool:
        return self.rotation_degrees > 0 or self.translate_fraction > 0 or self.scale_range != (1.0, 1.0)


class CvaeTrainConfig(BaseModel):
    """How ``train_cvae`` fits the model: Adam on the negative ELBO (Bernoulli reconstruction + beta * KL)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model: CvaeArchitecture = Field(default_factory=CvaeArchitecture)
    epochs: PositiveInt = Field(default=20, le=MAX_ITERATIONS)
    batch_size: PositiveInt = Field(default=64, le=MAX_BATCH_SIZE)
    # Above Adam's usual 1e-3 on purpose: early in training the 2-d latent learns to encode the class
    # (a cluster per class away from the prior), and faster steps undo that sooner, so prior samples
    # match their label more often (docs/benchmarks.md, CVAE section).
    learning_rate: PositiveFloat = 3e-3
    beta: NonNegativeFloat = Field(default=1.0, description="weight of the KL term; 1 is the plain ELBO")
    seed: NonNegativeInt = Field(default=0, le=MAX_SEED, description="seeds initialisation, shuffling, augmentation and the reparameterisation noise")
    augmentation: CvaeAugmentation = Field(default_factory=CvaeAugmentation)
