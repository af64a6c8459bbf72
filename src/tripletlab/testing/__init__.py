"""Conformance suites: check any implementation of tripletlab's losses against the definitions."""

from tripletlab.testing.batch import batch_triplet_definition, check_batch_triplet_loss
from tripletlab.testing.explicit import ConformanceReport, check_pair_loss, check_triplet_loss

__all__ = [
    "ConformanceReport",
    "batch_triplet_definition",
    "check_batch_triplet_loss",
    "check_pair_loss",
    "check_triplet_loss",
]
