"""Conformance suites: check any implementation of tripletlab's losses against the definitions.

Each suite is a table of module-level checks (``TRIPLET_CHECKS``, ``PAIR_CHECKS``,
``BATCH_CHECKS``) that :func:`check_triplet_loss`, :func:`check_pair_loss` and
:func:`check_batch_triplet_loss` run on generated inputs.
"""

from tripletlab.testing.batch import (
    BATCH_CHECKS,
    BatchCase,
    batch_triplet_definition,
    check_batch_triplet_loss,
)
from tripletlab.testing.explicit import (
    PAIR_CHECKS,
    TRIPLET_CHECKS,
    PairCase,
    TripletCase,
    check_pair_loss,
    check_triplet_loss,
)
from tripletlab.testing.suite import ConformanceReport

__all__ = [
    "BATCH_CHECKS",
    "PAIR_CHECKS",
    "TRIPLET_CHECKS",
    "BatchCase",
    "ConformanceReport",
    "PairCase",
    "TripletCase",
    "batch_triplet_definition",
    "check_batch_triplet_loss",
    "check_pair_loss",
    "check_triplet_loss",
]
