"""Object storage for ``s3://bucket/prefix`` roots: the few S3 calls the store needs, with one-line errors.

boto3, not fsspec/s3fs: the store needs exactly five operations (put, conditional put, get, list,
delete) and wants them synchronous and explicit. The conditional put (``If-None-Match: *``) is what
makes a manifest segment exactly-once, and boto3 exposes it as a plain argument; s3fs would hide it
behind a file-system API that has no create-if-absent, and pulls aiobotocore, which pins botocore to
a narrow range that fights the boto3 other packages (pytorch-pretrained-biggan) already install.

The endpoint, region and credentials come from the standard AWS sources (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE`` and ``~/.aws/config``), exactly as
boto3 and DALI's S3 reader read them, so one environment serves the writers and the trainers.
Nothing here is cached across processes: a ``S3Store`` pickles as its URL and reconnects.
"""

import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import boto3
import botocore.config
import botocore.exceptions

from shards.locations import MissingObjectError, S3Url, StorageError

# Few retries and short timeouts: an unreachable endpoint is reported in seconds, not minutes.
_CLIENT_CONFIG = botocore.config.Config(
    connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"}
)
# Requests in flight at once where a reader needs many objects (segments, shard copies): a store on
# loopback or in-region answers each in milliseconds, so latency, not bandwidth, bounds one at a time.
PARALLEL_REQUESTS = 8
T, R = TypeVar("T"), TypeVar("R")
_CREDENTIAL_CODES = {"SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "InvalidToken", "ExpiredToken", "403"}
_MISSING_BUCKET_CODES = {"NoSuchBucket"}
_PRECONDITION_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict"}
_MISSING_KEY_CODES = {"NoSuchKey", "404"}


def _code(error: botocore.exceptions.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class S3Store:
    """One bucket's objects under a prefix, addressed by keys relative to it.

    Args:
        url: the root, e.g. ``s3://genint/job1/shards``.
    """

    def __init__(self, url: S3Url):
        self.url = url
        self._client = None

    def __getstate__(self) -> dict:
        return {"url": self.url, "_client": None}

    @property
    def client(self):
        if self._client is None:
            # A session per store: boto3's default session is not safe to share across threads.
            self._client = boto3.session.Session().client("s3", config=_CLIENT_CONFIG)
        return self._client

    def _key(self, relative: str) -> str:
        return f"{self.url.prefix}/{relative}" if self.url.prefix else relative

    def _error(self, error: Exception, relative: str, doing: str) -> StorageError:
        """The one-line message for a failed call: what was asked of which URL, and what to change."""
        where = self.url.join(relative) if relative else self.url
        endpoint = self.client.meta.endpoint_url
        if isinstance(error, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectTimeoutError):
            return StorageError(f"{where}: cannot reach the S3 endpoint {endpoint} while {doing} "
                                "(start the server or set AWS_ENDPOINT_URL to a reachable one)")
        if isinstance(error, botocore.exceptions.NoCredentialsError):
            return StorageError(f"{where}: no S3 credentials found while {doing} "
                                "(set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)")
        if isinstance(error, botocore.exceptions.ClientError):
            code = _code(error)
            if code in _MISSING_BUCKET_CODES:
                return StorageError(f"{where}: bucket {self.url.bucket!r} does not exist at {endpoint} "
                                    "(create it, or fix the bucket in the store root)")
            if code in _CREDENTIAL_CODES:
                return StorageError(f"{where}: {endpoint} refused the credentials while {doing} ({code}; "
                                    "check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_PROFILE)")
            return StorageError(f"{where}: S3 error while {doing} ({code}: {error.response.get('Error', {}).get('Message', '')})")
        return StorageError(f"{where}: S3 request failed while {doing} ({type(error).__name__}: {error})")

    def check_bucket(self) -> None:
        """Fail early, with the reason, when the endpoint, bucket or credentials are wrong."""
        try:
            self.client.head_bucket(Bucket=self.url.bucket)
        except botocore.exceptions.ClientError as error:
            # HEAD carries no body: a missing bucket is a bare 404.
            if _code(error) in ("404", "NoSuchBucket"):
                error.response["Error"]["Code"] = "NoSuchBucket"
            raise self._error(error, "", "opening the bucket") from None
        except botocore.exceptions.BotoCoreError as error:
            raise self._error(error, "", "opening the bucket") from None

    @contextlib.contextmanager
    def _reading(self, relative: str, what: str) -> Iterator[None]:
        """Turn a failed read of ``relative`` into one StorageError: missing (naming ``what``) or why."""
        try:
            yield
        except botocore.exceptions.ClientError as error:
            if _code(error) in _MISSING_KEY_CODES:
                raise MissingObjectError(f"{self.url.join(relative)}: {what} is missing") from None
            raise self._error(error, relative, f"reading the {what}") from None
        except botocore.exceptions.BotoCoreError as error:
            raise self._error(error, relative, f"reading the {what}") from None

    def get(self, relative: str, what: str, max_bytes: int) -> bytes:
        """The object's bytes, refusing one larger than ``max_bytes``.

        Raises:
            StorageError: missing (naming ``what``), too large, or the request failed.
        """
        with self._reading(relative, what):
            response = self.client.get_object(Bucket=self.url.bucket, Key=self._key(relative))
            if response["ContentLength"] > max_bytes:
                response["Body"].close()
                raise StorageError(f"{self.url.join(relative)}: {what} is larger than {max_bytes} bytes")
            return response["Body"].read()

    def get_range(self, relative: str, start: int, length: int, what: str) -> bytes:
        """``length`` bytes of the object from ``start`` (one ranged GET)."""
        with self._reading(relative, what):
            response = self.client.get_object(Bucket=self.url.bucket, Key=self._key(relative),
                                              Range=f"bytes={start}-{start + length - 1}")
            return response["Body"].read()

    def download(self, relative: str, path: Path, what: str) -> None:
        """Copy the object to the local file ``path`` (ranged, parallel GETs for large objects)."""
        with self._reading(relative, what):
            self.client.download_file(self.url.bucket, self._key(relative), str(path))

    def put(self, relative: str, data: bytes) -> None:
        """Create or replace an object (S3 PUT is atomic: readers see the old or the whole new one)."""
        try:
            self.client.put_object(Bucket=self.url.bucket, Key=self._key(relative), Body=data)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
            raise self._error(error, relative, "writing") from None

    def upload(self, path: Path, relative: str) -> None:
        """Upload a local file (multipart past boto3's threshold); the object appears whole or not at all."""
        try:
            self.client.upload_file(str(path), self.url.bucket, self._key(relative))
        except boto3.exceptions.S3UploadFailedError as error:
            cause = error.__context__ if isinstance(error.__context__, Exception) else error
            raise self._error(cause, relative, "uploading") from None
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
            raise self._error(error, relative, "uploading") from None

    def put_new(self, relative: str, data: bytes) -> bool:
        """Create an object only if no object has that key (``If-None-Match: *``).

        Returns:
            False when the key already exists (nothing written), True when this call created it.
        """
        try:
            self.client.put_object(Bucket=self.url.bucket, Key=self._key(relative), Body=data, IfNoneMatch="*")
        except botocore.exceptions.ClientError as error:
            if _code(error) in _PRECONDITION_CODES:
                return False
            raise self._error(error, relative, "committing") from None
        except botocore.exceptions.BotoCoreError as error:
            raise self._error(error, relative, "committing") from None
        return True

    def list(self, relative_prefix: str) -> Iterator[tuple[str, int]]:
        """(key relative to the root, size in bytes) of every object whose key starts with the prefix, in key order."""
        start = len(self._key("")) if self.url.prefix else 0
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.url.bucket, Prefix=self._key(relative_prefix))
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"][start:], item["Size"]
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
            raise self._error(error, relative_prefix, "listing") from None

    def map(self, function: Callable[[T], R], items: Sequence[T]) -> "list[R]":
        """``function`` over ``items``, ``PARALLEL_REQUESTS`` at a time (each may call this store), results in order."""
        self.client  # made before the threads share it (boto3 clients are thread-safe; their creation is not)
        with ThreadPoolExecutor(PARALLEL_REQUESTS) as pool:
            return list(pool.map(function, items))

    def delete(self, relative: str) -> None:
        try:
            self.client.delete_object(Bucket=self.url.bucket, Key=self._key(relative))
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
            raise self._error(error, relative, "deleting") from None
