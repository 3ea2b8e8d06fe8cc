"""Shared test helpers: real encoded images and small shard stores written by the real writer."""

import io
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shards.writer import ShardWriter
from tests.s3_server import seaweedfs  # noqa: F401  (one SeaweedFS per session, for the tests that ask for it)


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago (each server given one binds it itself)."""
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def encoded_image(seed: int, size: int = 16, fmt: str = "JPEG") -> bytes:
    """A small random RGB image encoded as JPEG or PNG."""
    pixels = (np.random.default_rng(seed).random((size, size, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def make_sample(index: int, classes: int = 3) -> dict:
    """A contract-valid sample whose key, label and provenance follow from ``index``."""
    key = f"sample{index:05d}"
    fmt, ext = ("PNG", "png") if index % 4 == 3 else ("JPEG", "jpg")
    return {"__key__": key, ext: encoded_image(index, fmt=fmt), "cls": index % classes, "json": {"key": key, "index": index}}


def write_stream(stream_dir: Path, count: int, max_samples: int = 7, writer_id: str = "w0", stream: str = "original") -> list[dict]:
    """Write ``count`` samples through the real writer; return them as written."""
    samples = [make_sample(index) for index in range(count)]
    with ShardWriter(stream_dir, stream, writer_id, "testhash", max_samples=max_samples) as writer:
        for sample in samples:
            writer.write(sample)
    return samples


@pytest.fixture
def stream_dir(tmp_path: Path) -> Path:
    return tmp_path / "store" / "original"


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray for the module's tests (two CPUs, no dashboard)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
