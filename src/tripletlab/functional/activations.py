"""Activation functions of the lecture (seed 002), as plain functions of a tensor.

Each follows the lecture's formula and defaults (LeakyReLU a = 0.1, PReLU init 0.25,
RReLU a ~ U(1/8, 1/3), SELU's constants to the lecture's 34 digits), and builds on torch's
kernels where torch computes the same function.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: SELU constants as printed in the lecture (Klambauer et al. 2017).
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

#: RReLU's slope range in training, U(lower, upper).
RRELU_LOWER = 1.0 / 8.0
RRELU_UPPER = 1.0 / 3.0


def sigmoid(x: Tensor) -> Tensor:
    """``1 / (1 + e^(−x))``, in (0, 1).

    Example:
        >>> sigmoid(torch.tensor([0.0]))
        tensor([0.5000])
    """
    return torch.sigmoid(x)


def fast_sigmoid(x: Tensor) -> Tensor:
    """The lecture's piecewise approximation of the sigmoid (no exponential).

    With ``x' = x/2`` (sigmoid(x) = (1 + tanh(x'))/2, and z approximates tanh(x'))::

        |x'| < 1.7:  z = 1.5·|x'| / (1 + |x'|)
        |x'| < 2.9:  z = 0.9444 + 0.0459·(|x'| − 1.7)
        otherwise:   z = 0.9997
        z takes the sign of x;  result = (z + 1) / 2

    The approximation is odd around 0.5 (f(−x) = 1 − f(x)); its largest error against the exact
    sigmoid is 0.0276, at |x| ≈ 0.539 (measured in tests/test_activations.py); the pieces
    meet with small jumps (−2.2e-5 at |x| = 3.4, +1.1e-4 at |x| = 5.8).

    Example:
        >>> fast_sigmoid(torch.tensor([0.0, 100.0]))
        tensor([0.5000, 0.9999])
    """
    half = 0.5 * x
    magnitude = half.abs()
    rational = 1.5 * half / (1 + magnitude)  # already carries the sign, smooth through 0
    linear = torch.sign(half) * (0.9444 + 0.0459 * (magnitude - 1.7))
    flat = torch.sign(half) * 0.9997
    z = torch.where(magnitude < 1.7, rational, torch.where(magnitude < 2.9, linear, flat))
    return 0.5 * (z + 1)


def tanh(x: Tensor) -> Tensor:
    """``(e^x − e^(−x)) / (e^x + e^(−x))``, in (−1, 1)."""
    return torch.tanh(x)


def relu(x: Tensor) -> Tensor:
    """``max(0, x)``."""
    return torch.relu(x)


def relu6(x: Tensor) -> Tensor:
    """``min(max(0, x), 6)``."""
    return x.clamp(0, 6)


def leaky_relu(x: Tensor, negative_slope: float = 0.1) -> Tensor:
    """``max(0, x) + a·min(0, x)`` with the lecture's default ``a = 0.1`` (torch's is 0.01)."""
    return F.leaky_relu(x, negative_slope)


def prelu(x: Tensor, weight: Tensor) -> Tensor:
    """``max(0, x) + a·min(0, x)`` with a learnt ``a`` (one value, or one per channel = dim 1)."""
    return F.prelu(x, weight)


def rrelu(
    x: Tensor, lower: float = RRELU_LOWER, upper: float = RRELU_UPPER, training: bool = False
) -> Tensor:
    """Randomised leaky ReLU: slope ``a ~ U(lower, upper)`` per element in training, and the
    mean ``(lower + upper)/2`` in evaluation (Xu et al. 2015)."""
    return F.rrelu(x, lower, upper, training=training)


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """``x`` for x > 0, else ``α·(eˣ − 1)``."""
    return F.elu(x, alpha)


def selu(x: Tensor) -> Tensor:
    """``scale·(max(0, x) + min(0, α·(eˣ − 1)))`` with the lecture's α and scale."""
    return SELU_SCALE * torch.where(x > 0, x, SELU_ALPHA * torch.expm1(x.clamp_max(0)))
