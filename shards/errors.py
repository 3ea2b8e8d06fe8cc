"""Errors raised by the shard store. All derive from ShardError so callers can catch one type."""


class ShardError(Exception):
    """Base class for every error the shard store raises."""


class SampleError(ShardError):
    """A sample breaks the DESIGN contract and was not written."""


class ManifestError(ShardError):
    """A manifest cannot be read or appended to."""


class StoreFileError(ShardError):
    """A file of the store cannot be read as what it should be (missing, not a regular file, damaged).

    ``path`` and ``problem`` are kept apart so a report can print the path once; ``args`` holds both
    so the error pickles across Ray actor boundaries.
    """

    def __init__(self, path, problem: str):
        super().__init__(path, problem)
        self.path = path
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"
