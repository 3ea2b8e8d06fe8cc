"""DeepSpeed checkpoints kept on object storage: written to a local directory, then mirrored to ``s3://``.

DeepSpeed writes and reads checkpoints through local files only, so a job whose output is a bucket
keeps its step directories in a local scratch directory (as before) and this module copies them
up after every save and down before a restore. The bucket holds the same layout as the local
directory (``<url>/step_<9 digits>/<file>`` and ``<url>/latest``), written in the same order:
every file of a step, then its record (``genint-checkpoint.json``), then ``latest``. A reader
trusts only ``latest``, so a kill mid-upload leaves the bucket on the previous complete step.

Every node uploads the files its ranks wrote (the first rank on each host does it), so trainers on
several nodes without a shared volume (ZeRO's optimizer partitions are one file per rank) still
leave whole checkpoints; a restore downloads the step on each node the same way. What was
downloaded is checked against its record like any local checkpoint before DeepSpeed loads it.
"""

import re
from pathlib import Path

from shards.storage import S3Store, S3Url
from trainers.checkpoint_files import LATEST_NAME, RECORD_NAME, TAG_PREFIX, write_latest
from trainers.errors import TrainError

_TAG = re.compile(rf"{TAG_PREFIX}[0-9]{{9}}")
_MAX_LATEST_BYTES = 4096


def upload_files(tag_dir: Path, url: S3Url) -> None:
    """Upload the files of a local step directory but its record (each node its own ranks' files)."""
    store = S3Store(url)
    for path in sorted(tag_dir.iterdir()):
        if path.name != RECORD_NAME and path.is_file() and not path.is_symlink():
            store.upload(path, f"{tag_dir.name}/{path.name}")


def commit_upload(tag_dir: Path, url: S3Url, keep_tags: list[str]) -> None:
    """After every node uploaded its files: the step's record, then ``latest`` (the commit point);
    then remove the bucket's older steps that genint wrote and that ``keep_tags`` does not name."""
    store = S3Store(url)
    store.upload(tag_dir / RECORD_NAME, f"{tag_dir.name}/{RECORD_NAME}")
    store.put(LATEST_NAME, tag_dir.name.encode())
    for key, _ in list(store.list(TAG_PREFIX)):
        tag = key.split("/", 1)[0]
        if _TAG.fullmatch(tag) and tag < tag_dir.name and tag not in keep_tags:
            store.delete(key)


def remote_latest(url: S3Url) -> str | None:
    """The step the bucket's ``latest`` names, None when there is none.

    Raises:
        TrainError: ``latest`` names something other than a step directory genint writes.
    """
    store = S3Store(url)
    if not any(key == LATEST_NAME for key, _ in store.list(LATEST_NAME)):
        return None
    tag = store.get(LATEST_NAME, "'latest' file", _MAX_LATEST_BYTES).decode("ascii", errors="replace").strip()
    if not _TAG.fullmatch(tag):
        raise TrainError(f"checkpoint {url.join(LATEST_NAME)}: names {tag[:40]!r}, not a step directory genint writes "
                         f"({TAG_PREFIX}<9 digits>)")
    return tag


def download_step(url: S3Url, tag: str, directory: Path) -> None:
    """Copy the bucket's step ``tag`` into ``directory/tag`` and point the local ``latest`` at it."""
    store = S3Store(url)
    tag_dir = directory / tag
    tag_dir.mkdir(parents=True, exist_ok=True)
    for key, _ in list(store.list(f"{tag}/")):
        name = key.split("/", 1)[1]
        # Only plain file names: a key with more parts, or a dot-name, never becomes a local path.
        if "/" in name or name.startswith("."):
            continue
        store.download(key, tag_dir / name, "checkpoint file")
    write_latest(directory, tag)


def remove_remote_checkpoints(url: S3Url) -> None:
    """Delete the step objects genint wrote under ``url`` and its ``latest``; leave anything else."""
    store = S3Store(url)
    for key, _ in list(store.list("")):
        if key == LATEST_NAME or _TAG.fullmatch(key.split("/", 1)[0]):
            store.delete(key)
