"""Exceptions a user can cause. The CLI prints them as one line and exits with status 2."""

from __future__ import annotations


class TripletlabError(Exception):
    """Base class of the errors tripletlab raises for bad input, config or data."""


class ConfigError(TripletlabError, ValueError):
    """A configuration value is missing, of the wrong type or out of range."""


class DataError(TripletlabError, ValueError):
    """A dataset cannot be read or is unusable (empty, a single class, mismatched lengths)."""


class NumericalRangeError(TripletlabError, ValueError):
    """A result cannot be represented in the compute dtype (e.g. float32 distances of
    embeddings of magnitude 1e20 overflow); the message names the remedy."""
