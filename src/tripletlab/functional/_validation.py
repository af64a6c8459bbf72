"""Deprecated location of the argument checks: they live in :mod:`tripletlab.validation`.

Kept so that code importing ``tripletlab.functional._validation`` keeps working; nothing in
tripletlab imports it any more.
"""

from tripletlab.validation import (  # noqa: F401 - re-exports
    LOW_PRECISION,
    check_choice,
    check_embeddings,
    check_labels,
    check_nonnegative,
    check_positive,
    check_same_shape,
    check_smoothing,
    compute_dtype,
)
