"""The reader checks of ``shards.reader.check_committed_shards`` for a stream on object storage.

The same verdicts from the same bytes: one LIST gives every object's size, then per committed
shard one ranged GET of the tar's first block and one GET of its index, handed to the reader's own
``index_keys``. Nothing else of a tar is read here; DALI streams the tars itself.

With ``stage=True`` the shards are first copied to this node (``shards.s3_staging``) and the same
checks read the copies' first block and index instead; the readable shards are then the copies.

DALI (2.4.0 installed, tested against SeaweedFS 4.48): ``fn.readers.webdataset`` opens ``s3://``
tars with index files local or on S3 (or none, inferring the index by reading the tar), taking the
endpoint and keys from the AWS variables. It is correct but slow on small samples: it fetches
per sample, about 0.01 of local disk here (bench/dali_s3_read.py), which is why readers stage.
"""

from pathlib import Path

from shards.errors import ShardError
from shards.files import read_regular
from shards.manifest import ManifestRecord
from shards.names import index_file_name
from shards.reader import MIN_INDEX_LIMIT_BYTES, TAR_BLOCK_BYTES, DamagedShard, index_keys, split_readable
from shards.s3_staging import stage_shards
from shards.segments import SegmentManifest
from shards.storage import S3Url


def check_committed_s3_shards(stream_url: S3Url, stage: bool = False) -> tuple[list[tuple["S3Url | Path", ManifestRecord]], list[DamagedShard]]:
    """Every committed shard of an ``s3://`` stream, in commit order, split into (readable, damaged).

    Args:
        stage: copy the shards to this node first; the readable ones are then local tar paths (their
            indexes beside them), the damaged ones still name the objects.

    Raises:
        ShardError: if the manifest segments cannot be read or one has a bad line.
    """
    manifest = SegmentManifest(stream_url)
    records = manifest.shards()
    sizes = dict(manifest.store.list(""))
    copies = stage_shards(manifest.store, records, sizes) if stage else {}

    def parts(record: ManifestRecord) -> tuple[bytes, bytes]:
        """The tar's first block and the index's bytes, from the copies or the objects."""
        index_limit = max(record.bytes, MIN_INDEX_LIMIT_BYTES)
        if stage:
            copy = copies[record.name]
            with open(copy, "rb") as tar:
                first_block = tar.read(TAR_BLOCK_BYTES)
            return first_block, read_regular(copy.with_name(index_file_name(copy.name)), "DALI index", index_limit)
        return (manifest.store.get_range(record.name, 0, TAR_BLOCK_BYTES, "shard"),
                manifest.store.get(index_file_name(record.name), "DALI index", index_limit))

    def keys_of(url: S3Url, record: ManifestRecord) -> list[str]:
        index_name = index_file_name(record.name)
        if sizes.get(record.name) != record.bytes:
            found = "is missing" if record.name not in sizes else f"has {sizes[record.name]} bytes"
            raise ShardError(f"{url}: shard {found}, the manifest says {record.bytes} bytes")
        if index_name not in sizes:
            raise ShardError(f"{stream_url.join(index_name)}: DALI index is missing")
        return index_keys(url, record, *parts(record), stream_url.join(index_name))

    readable, damaged = split_readable([(stream_url.join(record.name), record) for record in records], keys_of)
    if stage:
        readable = [(copies[record.name], record) for _, record in readable]
    return readable, damaged
