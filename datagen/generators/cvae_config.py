"""Settings of the class-conditional VAE: its architecture (saved with the weights) and its training."""

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
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
    seed: NonNegativeInt = Field(default=0, le=MAX_SEED, description="seeds initialisation, shuffling and the reparameterisation noise")
