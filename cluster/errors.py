"""Errors raised by the cluster layer. All derive from ClusterError."""


class ClusterError(Exception):
    """Base class for every error the cluster layer raises."""


class ConfigError(ClusterError):
    """A job config is unreadable or invalid; the message is one line naming the YAML path."""
