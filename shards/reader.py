"""Reading committed data: shard lists from manifests and raw samples through webdataset.

Samples come back as raw bytes; nothing here decodes, so no pickle is ever loaded from a shard.
"""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import webdataset

from shards.errors import ShardError
from shards.manifest import MANIFEST_NAME, Manifest, ManifestRecord


def stream_dirs(root: Path) -> list[Path]:
    """The stream directories under ``root``: itself if it has a manifest, else its children that do.

    Raises:
        ShardError: if ``root`` is not a directory or holds no manifest.
    """
    root = Path(root)
    if not root.is_dir():
        raise ShardError(f"{root}: not a directory")
    if (root / MANIFEST_NAME).exists():
        return [root]
    found = sorted(child for child in root.iterdir() if (child / MANIFEST_NAME).exists())
    if not found:
        raise ShardError(f"{root}: no {MANIFEST_NAME} here or in its subdirectories")
    return found


def committed_shards(stream_dir: Path) -> list[tuple[Path, ManifestRecord]]:
    """(tar path, record) of every committed shard of a stream, in commit order."""
    return [(Path(stream_dir) / record.name, record) for record in Manifest(stream_dir).shards()]


def iter_samples(
    shard_paths: list[Path],
    handler: Callable[[Exception], bool] = webdataset.reraise_exception,
) -> Iterator[dict[str, Any]]:
    """Raw samples (``__key__`` and bytes per field) of the given shards, in order."""
    if not shard_paths:
        return iter(())
    dataset = webdataset.WebDataset(
        [str(path) for path in shard_paths], shardshuffle=False, handler=handler, empty_check=False
    )
    return iter(dataset)
