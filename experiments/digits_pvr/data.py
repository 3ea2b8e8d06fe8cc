"""The benchmark's shard streams: each split's pointer-value grids as PNG samples whose json carries the
four digits (``shards.causal_values``), so interchange intervention training reads them with the images.

Streams: ``original`` (the training split), ``validation``, ``test`` and ``augmented`` (the augmentation
arm's: training grids with one cell swapped in from another training grid, at a random position, and
labelled by the causal model). Each stream is written once by the real ``ShardWriter`` into a temporary
directory, renamed into the store, and reused while its settings (the config hash in its manifest) stay.
"""

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cluster.errors import ClusterError
from experiments.digits_pvr.grids import POSITIONS, Grids, make_grids, swap_cells
from shards.causal_values import with_causal_values
from shards.manifest import Manifest
from shards.writer import ShardWriter
from trainers.causal_models import causal_model

SPLIT_OF_STREAM = {"original": "train", "validation": "validation", "test": "test"}
AUGMENTED_STREAM = "augmented"
MAX_SAMPLES_PER_SHARD = 512
PVR = causal_model("pointer_value")


def augmented_grids(count: int, seed: int) -> Grids:
    """``count`` training grids each with one random cell replaced by a random cell of another training grid,
    labelled by the causal model (the seed's augmentation; their image indices are the base's)."""
    base = make_grids("train", count, seed)
    generator = torch.Generator().manual_seed(seed * 7919 + 1)
    source = torch.randperm(count, generator=generator)
    base_cells, source_cells = torch.randint(len(POSITIONS), (count,), generator=generator), torch.randint(len(POSITIONS), (count,), generator=generator)
    images = swap_cells(base.images, base.images[source], base_cells, source_cells)
    written = base.digits[source].gather(1, source_cells[:, None])
    digits = torch.where(torch.nn.functional.one_hot(base_cells, len(POSITIONS)).bool(), written, base.digits)
    return Grids(images, digits, PVR.output(digits), base.image_indices)


def stream_grids(stream: str, count: int, seed: int) -> Grids:
    """The grids of one of the benchmark's streams."""
    if stream == AUGMENTED_STREAM:
        return augmented_grids(count, seed)
    return make_grids(SPLIT_OF_STREAM[stream], count, seed)


def _png(image: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_grids(stream_dir: Path, stream: str, grids: Grids, config_hash: str) -> None:
    """Write ``grids`` as the stream at ``stream_dir`` (a new directory) through the real shard writer."""
    with ShardWriter(stream_dir, stream, "grids", config_hash, max_samples=MAX_SAMPLES_PER_SHARD) as writer:
        for row, (image, digits, label) in enumerate(zip(grids.images, grids.digits.tolist(), grids.labels.tolist())):
            record = {"stream": stream, "class": label, "grid": row, "image_indices": grids.image_indices[row].tolist()}
            writer.write({"__key__": f"grid{row:06d}", "png": _png(image), "cls": label,
                          "json": with_causal_values(record, dict(zip(POSITIONS, digits)))})


def _digest(stream: str, count: int, seed: int) -> str:
    return hashlib.sha256(json.dumps({"stream": stream, "count": count, "seed": seed}).encode()).hexdigest()


def write_streams(store_dir: Path, counts: dict[str, int], seed: int) -> None:
    """Write every stream of ``counts`` (stream -> grids) under ``store_dir``, reusing one written with the same
    settings; one with other settings is refused (``--fresh`` starts over)."""
    for stream, count in counts.items():
        stream_dir, digest = store_dir / stream, _digest(stream, count, seed)
        if stream_dir.exists():
            records = Manifest(stream_dir).shards()
            if records and all(record.config_hash == digest for record in records) and sum(r.samples for r in records) == count:
                continue
            raise ClusterError(f"{stream_dir} holds grids made with other settings; run with --fresh or use another output_dir")
        temporary = stream_dir.with_name(stream_dir.name + ".tmp")
        shutil.rmtree(temporary, ignore_errors=True)  # a crashed write of ours
        write_grids(temporary, stream, stream_grids(stream, count, seed), digest)
        temporary.rename(stream_dir)
