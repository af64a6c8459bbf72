"""Argument checks for the tensor maths, and the numeric-range helpers of the losses.

The argument checks live in :mod:`tripletlab.validation` (re-exported here, so code importing
``tripletlab.functional._validation`` keeps working); :func:`overflow_scale` and
:func:`check_scaled_result` are the losses' guard against float overflow of huge embeddings.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

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
    finite_max_abs,
)

#: Rows of at most this norm (in units of the dtype's range, see :func:`overflow_scale`) are
#: computed as given; the squared norms and GEMM sums of centred rows (at most 2× the largest
#: entry, D + 2 terms) then stay below the largest finite value with a factor 4 to spare.
_OVERFLOW_HEADROOM = 64


def overflow_scale(largest: float, dim: int, dtype: torch.dtype) -> float:
    """A power of two c ≤ 1 such that distances of ``c·x`` cannot overflow ``dtype``.

    1.0 unless ``largest`` (the largest |entry|) is so large that squared distances could
    overflow; then 2^−e with 2^e ≥ ``largest``, so the scaled entries are at most 1. Scaling by
    a power of two is exact (ties and decisions are kept); the losses scale their margin and
    smoothing with it and divide the result by the matching power (the hinge and softplus
    are positively homogeneous: h(x/c; μ) = h(x; cμ)/c).

    Example:
        >>> overflow_scale(1e20, 128, torch.float32)  # 2**-67
        6.776263578034403e-21
        >>> overflow_scale(3.0, 128, torch.float32)
        1.0
    """
    limit = math.sqrt(torch.finfo(dtype).max / (_OVERFLOW_HEADROOM * (dim + 2)))
    if largest <= limit:
        return 1.0
    return 2.0 ** -math.ceil(math.log2(largest))


def check_scaled_result(result: Tensor, scale: float, what: str) -> Tensor:
    """After an overflow rescaling (``scale`` < 1), refuse a result the dtype cannot hold."""
    if scale != 1.0 and result.numel() and not bool(torch.isfinite(result.detach()).all()):
        from tripletlab.errors import NumericalRangeError

        raise NumericalRangeError(
            f"{what} overflows {result.dtype}: the embeddings are too large for their "
            "distances to be represented; normalise them or compute in float64"
        )
    return result
