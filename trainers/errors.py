"""Errors raised by training and evaluation. All derive from TrainError."""


class TrainError(Exception):
    """Base class for every error trainers raise."""
