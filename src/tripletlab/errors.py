"""Exceptions a user can cause. The CLI prints them as one line and exits with status 2.

Every class subclasses :class:`TripletlabError`; the argument errors also subclass the
built-in ``ValueError`` / ``TypeError`` so that ``except ValueError`` in user code keeps
working. A bare ``ValueError`` raised inside the library is a bug, and the CLI shows its
traceback.

Example:
    >>> issubclass(InvalidArgumentError, ValueError), issubclass(ConfigError, TripletlabError)
    (True, True)
"""

from __future__ import annotations

__all__ = [
    "ArgumentTypeError",
    "ConfigError",
    "DataError",
    "InvalidArgumentError",
    "TripletlabError",
]


class TripletlabError(Exception):
    """Base class of the errors tripletlab raises for bad input, config or data."""


class InvalidArgumentError(TripletlabError, ValueError):
    """An argument has a value outside what the function accepts (a negative margin, an
    unknown metric, a tensor with NaN, a shape that does not match)."""


class ArgumentTypeError(TripletlabError, TypeError):
    """An argument has the wrong type (a list where a tensor is needed, float labels)."""


class ConfigError(TripletlabError, ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


class DataError(TripletlabError, ValueError):
    """A dataset cannot be read or is unusable (empty, a single class, mismatched lengths)."""


class NumericalRangeError(TripletlabError, ValueError):
    """A result cannot be represented in the compute dtype (e.g. float32 distances of
    embeddings of magnitude 1e20 overflow); the message names the remedy."""
