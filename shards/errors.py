"""Errors raised by the shard store. All derive from ShardError so callers can catch one type."""


class ShardError(Exception):
    """Base class for every error the shard store raises."""


class SampleError(ShardError):
    """A sample breaks the DESIGN contract and was not written."""


class ManifestError(ShardError):
    """A manifest cannot be read or appended to."""
