"""Errors meant for people: each carries one line saying what is wrong and what to do.

The CLI prints `str(error)` on one line and exits with `exit_code`; no traceback.
"""

from __future__ import annotations


class TakeoverError(Exception):
    """Base of every error the CLI reports as one line."""

    exit_code = 1


class UsageError(TakeoverError):
    """Bad input from the user: a config, a URL, a flag. Exit code 2."""

    exit_code = 2


class ConfigError(UsageError):
    """A malformed or invalid takeover.toml."""


class LinkError(TakeoverError):
    """The robot link could not be opened or failed."""


class PolicyError(TakeoverError):
    """A model file that cannot be used: missing, corrupt, or made for other sensors."""
