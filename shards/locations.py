"""Where a store lives: ``s3://bucket/prefix`` URLs and local paths, parsed without any S3 client.

Config validation parses store roots, and it must stay light (no boto3 import), so the URL type
lives here and ``shards.storage`` holds the client.
"""

from dataclasses import dataclass
from pathlib import Path

from shards.errors import ShardError

SCHEME = "s3://"


def is_s3_url(root: object) -> bool:
    """Whether a store root (a path, a string or an S3Url) names object storage rather than a directory."""
    return isinstance(root, S3Url) or (isinstance(root, str) and root.startswith(SCHEME))


class StorageError(ShardError):
    """Object storage refused or could not be reached; the message names the URL and the fix."""


class MissingObjectError(StorageError):
    """The object asked for does not exist (a shard, an index, a segment, a stream's small file)."""


@dataclass(frozen=True)
class S3Url:
    """``s3://bucket/prefix``: a bucket and a key prefix without leading or trailing slash."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: "str | S3Url") -> "S3Url":
        """Split ``s3://bucket/a/b`` into bucket and prefix (an S3Url is returned as it is).

        Raises:
            StorageError: when the URL has no bucket or holds ``..`` or empty parts.
        """
        if isinstance(url, S3Url):
            return url
        rest = url.removeprefix(SCHEME)
        bucket, _, prefix = rest.partition("/")
        prefix = prefix.strip("/")
        parts = prefix.split("/") if prefix else []
        if not bucket or any(part in ("", ".", "..") for part in parts):
            raise StorageError(f"{url}: not an S3 store root (expected s3://BUCKET/PREFIX with no empty, '.' or '..' parts)")
        return cls(bucket, prefix)

    def join(self, *parts: str) -> "S3Url":
        return S3Url(self.bucket, "/".join(part for part in (self.prefix, *parts) if part))

    @property
    def name(self) -> str:
        """The last part of the prefix (a stream directory's stream name)."""
        return self.prefix.rsplit("/", 1)[-1]

    def with_name(self, name: str) -> "S3Url":
        """The sibling object ``name`` (as ``Path.with_name``: a shard's index beside its tar)."""
        parent = self.prefix.rpartition("/")[0]
        return S3Url(self.bucket, f"{parent}/{name}" if parent else name)

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"

    def __truediv__(self, part: str) -> "S3Url":
        return self.join(part)


StreamLocation = Path | S3Url


def stream_location(value: "str | Path | S3Url") -> StreamLocation:
    """A store root or stream directory as given in config: ``s3://...`` strings become S3Url, the rest Path."""
    if isinstance(value, S3Url):
        return value
    return S3Url.parse(value) if is_s3_url(value) else Path(value)
