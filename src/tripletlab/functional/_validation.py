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


def check_embeddings(x: object, name: str, ndim: int = 2) -> Tensor:
    """A floating tensor of ``ndim`` dimensions with only finite entries."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor; got dtype {x.dtype}")
    if x.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions; got shape {tuple(x.shape)}")
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or Inf values")
    return x


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
