"""Errors raised by generation. All derive from DatagenError."""


class DatagenError(Exception):
    """Base class for every error datagen raises."""
