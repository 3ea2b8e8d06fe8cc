"""Bounds of the training and evaluation configs, shared by the fields that mean the same thing.

Each is far past what a real run at ImageNet scale asks for; beyond it a value is a typo (or
hostile) and would fail deep inside DALI, DeepSpeed or numpy, so the config refuses it and says
the bound.
"""

MAX_BATCH_SIZE = 65_536  # samples per stream per step on one worker; images per evaluation batch
MAX_CLASSES = 1_000_000
MAX_IMAGE_SIZE_PX = 4_096  # crop and resize sides
MAX_STEPS = 10**9  # any count of optimiser steps or epochs
MAX_WORKERS = 1_024  # Ray Train workers
MAX_THREADS = 256  # DALI threads per pipeline
MAX_PREFETCH_BATCHES = 64
MAX_SHUFFLE_BUFFER = 1_000_000
MAX_RETAINED = 1_000  # checkpoints kept, worker-group restarts
MAX_TIMEOUT_S = 30 * 24 * 3600.0
MAX_ANGLE_DEG = 180.0
# The loop seeds numpy with ``seed * 1000 + rank``, which numpy needs below 2**32.
MAX_SEED = (2**32 - MAX_WORKERS) // 1000
MAX_IIA_TRIPLES = 1_000_000  # (base, source, variable) triples one IIA evaluation samples
