"""The reader checks of ``shards.reader.check_committed_shards`` for a stream on object storage.

The same verdicts from the same bytes: one LIST gives every object's size, then per committed
shard one ranged GET of the tar's first block and one GET of its index, handed to the reader's own
``index_keys``. Nothing else of a tar is read here; DALI streams the tars itself.

DALI (2.4.0 installed, tested against SeaweedFS 4.48): ``fn.readers.webdataset`` opens ``s3://``
tars with index files local or on S3 (or none, inferring the index by reading the tar), taking the
endpoint and keys from the AWS variables. It is correct but slow on small samples: it fetches
per sample, about 110 samples/s here against 6,100 from local disk (bench/dali_s3_read.py).
"""

from shards.errors import ShardError
from shards.manifest import ManifestRecord
from shards.names import index_file_name
from shards.reader import MIN_INDEX_LIMIT_BYTES, TAR_BLOCK_BYTES, DamagedShard, index_keys, split_readable
from shards.segments import SegmentManifest
from shards.storage import S3Url


def check_committed_s3_shards(stream_url: S3Url) -> tuple[list[tuple[S3Url, ManifestRecord]], list[DamagedShard]]:
    """Every committed shard of an ``s3://`` stream, in commit order, split into (readable, damaged).

    Raises:
        ShardError: if the manifest segments cannot be read or one has a bad line.
    """
    manifest = SegmentManifest(stream_url)
    records = manifest.shards()
    sizes = dict(manifest.store.list(""))

    def keys_of(url: S3Url, record: ManifestRecord) -> list[str]:
        index_name = index_file_name(record.name)
        if sizes.get(record.name) != record.bytes:
            found = "is missing" if record.name not in sizes else f"has {sizes[record.name]} bytes"
            raise ShardError(f"{url}: shard {found}, the manifest says {record.bytes} bytes")
        if index_name not in sizes:
            raise ShardError(f"{stream_url.join(index_name)}: DALI index is missing")
        first_block = manifest.store.get_range(record.name, 0, TAR_BLOCK_BYTES, "shard")
        index = manifest.store.get(index_name, "DALI index", max(record.bytes, MIN_INDEX_LIMIT_BYTES))
        return index_keys(url, record, first_block, index, stream_url.join(index_name))

    return split_readable([(stream_url.join(record.name), record) for record in records], keys_of)
