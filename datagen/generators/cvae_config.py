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


class CvaeArchitecture(BaseModel):
    """The network's shape; written to ``config.json`` beside the weights so a load rebuilds it exactly.

    Defaults follow the GenInt Colored-MNIST reference: MLPs over 32x32x3 inputs, hidden 1000,
    latent 2, label embedding 5.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_classes: PositiveInt = 10
    image_size: PositiveInt = Field(default=32, description="side of the square RGB images, in pixels")
    hidden_dim: PositiveInt = Field(default=1000, description="width of the encoder's and decoder's hidden layer")
    latent_dim: PositiveInt = 2
    label_embedding_dim: PositiveInt = 5


class CvaeTrainConfig(BaseModel):
    """How ``train_cvae`` fits the model: Adam on the negative ELBO (Bernoulli reconstruction + beta * KL)."""

    model_config = ConfigDict(extra="forbid")

    model: CvaeArchitecture = Field(default_factory=CvaeArchitecture)
    epochs: PositiveInt = 20
    batch_size: PositiveInt = 64
    # Above Adam's usual 1e-3 on purpose: early in training the 2-d latent learns to encode the class
    # (a cluster per class away from the prior), and faster steps undo that sooner, so prior samples
    # match their label more often (docs/benchmarks.md, CVAE section).
    learning_rate: PositiveFloat = 3e-3
    beta: NonNegativeFloat = Field(default=1.0, description="weight of the KL term; 1 is the plain ELBO")
    seed: NonNegativeInt = Field(default=0, description="seeds initialisation, shuffling and the reparameterisation noise")
