"""Eager argument checks shared by every layer (the lowest layer, beside :mod:`errors`).

Every public function validates its inputs before computing, so a mistake surfaces as an
:class:`~tripletlab.errors.InvalidArgumentError` (a ``ValueError``) or
:class:`~tripletlab.errors.ArgumentTypeError` (a ``TypeError``) naming the argument and what
was received — not as a shape error deep in a matmul or as a silent NaN.

Example:
    >>> check_choice("cosine", "metric", ("sqeuclidean", "cosine"))
    'cosine'
    >>> check_nonnegative(-1.0, "margin")
    Traceback (most recent call last):
    ...
    tripletlab.errors.InvalidArgumentError: margin must be finite and >= 0; got -1.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from tripletlab.errors import ArgumentTypeError, InvalidArgumentError

__all__ = [
    "LOW_PRECISION",
    "check_choice",
    "check_embeddings",
    "check_labels",
    "check_nonnegative",
    "check_positive",
    "check_positive_int",
    "check_same_shape",
    "check_smoothing",
    "compute_dtype",
    "finite_max_abs",
]

LOW_PRECISION = (torch.float16, torch.bfloat16)

Choice = TypeVar("Choice", bound=str)


def check_choice(value: object, name: str, allowed: Iterable[Choice]) -> Choice:
    """Return ``value`` if it is one of ``allowed``, else raise naming ``name``.

    The result has the type of ``allowed``'s items, so a tuple of ``Literal`` names gives
    back that ``Literal`` type.
    """
    choices = tuple(allowed)
    for choice in choices:
        if isinstance(value, str) and value == choice:
            return choice
    listed = ", ".join(repr(a) for a in choices)
    raise InvalidArgumentError(f"{name} must be one of {listed}; got {value!r}")


def check_nonnegative(value: object, name: str) -> float:
    """A finite real number ≥ 0 (a margin, a weight)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{name} must be a real number; got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise InvalidArgumentError(f"{name} must be finite and >= 0; got {value!r}")
    return float(value)


def check_positive(value: object, name: str) -> float:
    """A finite real number > 0 (a scale, a temperature, a delta)."""
    number = check_nonnegative(value, name)
    if number == 0:
        raise InvalidArgumentError(f"{name} must be > 0; got {number!r}")
    return number


def check_positive_int(value: object, name: str) -> int:
    """An integer ≥ 1 (a count, a batch size); numpy integers accepted, bools refused."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidArgumentError(f"{name} must be a positive int; got {value!r}")
    return int(value)


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
        raise ArgumentTypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
    if not x.is_floating_point():
        raise ArgumentTypeError(f"{name} must be a floating-point tensor; got dtype {x.dtype}")
    if x.dim() != ndim:
        raise InvalidArgumentError(
            f"{name} must have {ndim} dimensions; got shape {tuple(x.shape)}"
        )
    if check_values:
        finite_max_abs(x, name)
    return x


def finite_max_abs(x: Tensor, name: str) -> float:
    """The largest |entry| of ``x`` (0 when empty), read with one host synchronisation;
    raises an :class:`InvalidArgumentError` naming ``name`` when an entry is NaN or Inf
    (amax propagates NaN)."""
    if not x.numel():
        return 0.0
    largest = float(x.detach().abs().amax())
    if not math.isfinite(largest):
        raise InvalidArgumentError(f"{name} contains NaN or Inf values")
    return largest


def check_same_shape(*named: tuple[str, Tensor]) -> None:
    """All tensors have the shape of the first one."""
    first_name, first = named[0]
    for name, t in named[1:]:
        if t.shape != first.shape:
            raise InvalidArgumentError(
                f"{name} must have the shape of {first_name} {tuple(first.shape)}; "
                f"got {tuple(t.shape)}"
            )


def check_labels(labels: object, n: int, name: str = "labels") -> Tensor:
    """A 1-D integer (or bool) tensor of length ``n``."""
    if not isinstance(labels, Tensor):
        raise ArgumentTypeError(f"{name} must be a torch.Tensor; got {type(labels).__name__}")
    if labels.is_floating_point() or labels.is_complex():
        raise ArgumentTypeError(f"{name} must be an integer tensor; got dtype {labels.dtype}")
    if labels.dim() != 1 or labels.shape[0] != n:
        raise InvalidArgumentError(f"{name} must have shape ({n},); got {tuple(labels.shape)}")
    return labels


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float16/bfloat16 inputs are computed in float32; otherwise the promoted input dtype.

    Example:
        >>> compute_dtype(torch.zeros(1, dtype=torch.float16))
        torch.float32
    """
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return torch.float32 if dtype in LOW_PRECISION else dtype
