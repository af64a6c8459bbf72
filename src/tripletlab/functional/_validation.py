"""Eager argument checks shared by the functional API.

Every public function validates its inputs before computing, so a mistake surfaces as a
ValueError/TypeError naming the argument and what was received, not as a shape error deep in
a matmul or as a silent NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

LOW_PRECISION = (torch.float16, torch.bfloat16)


def check_choice(value: object, name: str, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise a ValueError naming ``name``."""
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")
    return value


def check_nonnegative(value: object, name: str) -> float:
    """A finite real number ≥ 0 (a margin, a weight)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0; got {value!r}")
    return float(value)


def check_positive(value: object, name: str) -> float:
    """A finite real number > 0 (a scale, a temperature, a delta)."""
    value = check_nonnegative(value, name)
    if value == 0:
        raise ValueError(f"{name} must be > 0; got {value!r}")
    return value


def check_smoothing(smoothing: object) -> float | None:
    """None or 0 mean the hinge; μ > 0 the smoothed hinge μ·softplus(x/μ)."""
    if smoothing is None:
        return None
    value = check_nonnegative(smoothing, "smoothing")
    return None if value == 0 else value


def check_embeddings(x: object, name: str, ndim: int = 2, check_values: bool = True) -> Tensor:
    """A floating tensor of ``ndim`` dimensions with only finite entries (the values are
    checked unless ``check_values=False``, for callers that read them with
    :func:`finite_max_abs` anyway)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor; got dtype {x.dtype}")
    if x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions; got shape {tuple(x.shape)}")
    if check_values:
        finite_max_abs(x, name)
    return x


def finite_max_abs(x: Tensor, name: str) -> float:
    """The largest |entry| of ``x`` (0 when empty), read with one host synchronisation;
    raises a ValueError naming ``name`` when an entry is NaN or Inf (amax propagates NaN)."""
    if not x.numel():
        return 0.0
    largest = float(x.detach().abs().amax())
    if not math.isfinite(largest):
        raise ValueError(f"{name} contains NaN or Inf values")
    return largest


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


def check_same_shape(*named: tuple[str, Tensor]) -> None:
    """All tensors have the shape of the first one."""
    first_name, first = named[0]
    for name, t in named[1:]:
        if t.shape != first.shape:
            raise ValueError(
                f"{name} must have the shape of {first_name} {tuple(first.shape)}; "
                f"got {tuple(t.shape)}"
            )


def check_labels(labels: object, n: int, name: str = "labels") -> Tensor:
    """A 1-D integer (or bool) tensor of length ``n``."""
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"{name} must be an integer tensor; got dtype {labels.dtype}")
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},); got {tuple(labels.shape)}")
    return labels


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float16/bfloat16 inputs are computed in float32; otherwise the promoted input dtype."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return torch.float32 if dtype in LOW_PRECISION else dtype
