"""Bounds of the generation configs, shared by the fields that mean the same thing.

Each is far past what generation at ImageNet scale asks for; beyond it a value is a typo (or
hostile) and would fail deep inside torch, numpy or Ray, so the config refuses it and says the bound.
"""

MAX_ACTORS = 1_024  # generator or transfer actors
MAX_BATCH_SIZE = 65_536  # images (or pairs) per forward pass or optimisation problem
MAX_CLASSES = 1_000_000
MAX_IMAGE_SIZE_PX = 4_096
MAX_SAMPLES = 10**9  # any count of latents, seeds or images
MAX_ITERATIONS = 10**6  # epochs, optimiser steps, L-BFGS history
MAX_DIMENSIONS = 65_536  # network widths, latent sizes, principal components
MAX_TIMEOUT_S = 30 * 24 * 3600.0
# Seeds feed numpy's RandomState and torch generators, both happy below 2**32.
MAX_SEED = 2**32 - 1
