"""The hinge and its smoothed family: ``[x]₊`` for μ = None/0, else ``μ·softplus(x/μ)``.

μ = 1 with margin 0 is Hermans et al.'s soft margin; μ → 0 recovers the hinge, and
``0 ≤ μ·softplus(x/μ) − [x]₊ ≤ μ·log 2``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def smooth_hinge(x: Tensor, smoothing: float | None) -> Tensor:
    """``max(0, x)`` if ``smoothing`` is None or 0, else ``μ·log(1 + exp(x/μ))``.

    Example:
        >>> smooth_hinge(torch.tensor([-1.0, 0.0, 2.0]), None)
        tensor([0., 0., 2.])
    """
    if not smoothing:
        return x.clamp_min(0)
    return torch.nn.functional.softplus(x, beta=1.0 / smoothing, threshold=20.0)


def smooth_hinge_derivative(x: Tensor, smoothing: float | None) -> Tensor:
    """d/dx of :func:`smooth_hinge`: the indicator ``x > 0`` (0 at the kink), or sigmoid(x/μ)."""
    if not smoothing:
        return (x > 0).to(x.dtype)
    return torch.sigmoid(x / smoothing)
