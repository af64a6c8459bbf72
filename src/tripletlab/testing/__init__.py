"""Conformance suites: check any implementation of tripletlab's losses against the definitions."""

from tripletlab.testing.explicit import ConformanceReport, check_pair_loss, check_triplet_loss

__all__ = ["ConformanceReport", "check_pair_loss", "check_triplet_loss"]
