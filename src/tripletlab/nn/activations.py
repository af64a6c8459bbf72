"""Activation modules of the lecture (seed 002) and the ``get_activation`` factory.

The modules are thin wrappers over :mod:`tripletlab.functional.activations` with the
lecture's defaults (LeakyReLU a = 0.1, PReLU init 0.25, RReLU U(1/8, 1/3), SELU's constants).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from tripletlab.errors import ArgumentTypeError, InvalidArgumentError
from tripletlab.functional import activations as A


class Sigmoid(nn.Module):
    """``1 / (1 + e^(−x))``."""

    def forward(self, x: Tensor) -> Tensor:
        return A.sigmoid(x)


class FastSigmoid(nn.Module):
    """The lecture's piecewise sigmoid approximation (see :func:`~A.fast_sigmoid`)."""

    def forward(self, x: Tensor) -> Tensor:
        return A.fast_sigmoid(x)


class Tanh(nn.Module):
    """Hyperbolic tangent."""

    def forward(self, x: Tensor) -> Tensor:
        return A.tanh(x)


class ReLU(nn.Module):
    """``max(0, x)``."""

    def forward(self, x: Tensor) -> Tensor:
        return A.relu(x)


class ReLU6(nn.Module):
    """``min(max(0, x), 6)``."""

    def forward(self, x: Tensor) -> Tensor:
        return A.relu6(x)


class LeakyReLU(nn.Module):
    """``max(0, x) + a·min(0, x)``, default ``a = 0.1`` as in the lecture."""

    def __init__(self, negative_slope: float = 0.1) -> None:
        super().__init__()
        self.negative_slope = _check_slope(negative_slope, "negative_slope")

    def forward(self, x: Tensor) -> Tensor:
        return A.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class PReLU(nn.Module):
    """Leaky ReLU with a learnt slope ``a`` (initialised to 0.25), one per channel if asked."""

    def __init__(self, num_parameters: int = 1, init: float = 0.25) -> None:
        super().__init__()
        if not isinstance(num_parameters, int) or num_parameters < 1:
            raise InvalidArgumentError(
                f"num_parameters must be an integer >= 1; got {num_parameters!r}"
            )
        self.weight = nn.Parameter(torch.full((num_parameters,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return A.prelu(x, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.weight.numel()}"


class RReLU(nn.Module):
    """Randomised leaky ReLU: ``a ~ U(lower, upper)`` in training, ``(lower+upper)/2`` in eval."""

    def __init__(self, lower: float = A.RRELU_LOWER, upper: float = A.RRELU_UPPER) -> None:
        super().__init__()
        self.lower = _check_slope(lower, "lower")
        self.upper = _check_slope(upper, "upper")
        if self.lower > self.upper:
            raise InvalidArgumentError(
                f"lower must be <= upper; got lower={lower!r}, upper={upper!r}"
            )

    def forward(self, x: Tensor) -> Tensor:
        return A.rrelu(x, self.lower, self.upper, training=self.training)

    def extra_repr(self) -> str:
        return f"lower={self.lower}, upper={self.upper}"


class ELU(nn.Module):
    """``x`` for x > 0, else ``α·(eˣ − 1)``."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = _check_slope(alpha, "alpha")

    def forward(self, x: Tensor) -> Tensor:
        return A.elu(x, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class SELU(nn.Module):
    """Scaled ELU with the lecture's α = 1.67326… and scale = 1.05070…"""

    def forward(self, x: Tensor) -> Tensor:
        return A.selu(x)


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "identity": nn.Identity,
    "sigmoid": Sigmoid,
    "fast_sigmoid": FastSigmoid,
    "tanh": Tanh,
    "relu": ReLU,
    "relu6": ReLU6,
    "leaky_relu": LeakyReLU,
    "prelu": PReLU,
    "rrelu": RReLU,
    "elu": ELU,
    "selu": SELU,
}


def get_activation(name: str | None) -> nn.Module:
    """A fresh activation module by name (``None``, ``"none"`` or ``"linear"`` → identity).

    Names: identity, sigmoid, fast_sigmoid, tanh, relu, relu6, leaky_relu, prelu, rrelu, elu,
    selu. Each call returns a new module (a PReLU's slope is never shared by accident).

    Example:
        >>> get_activation("leaky_relu")
        LeakyReLU(negative_slope=0.1)
    """
    if name is None or name in ("none", "linear"):
        return nn.Identity()
    if not isinstance(name, str) or name not in ACTIVATIONS:
        allowed = ", ".join(repr(k) for k in (*ACTIVATIONS, "none", "linear"))
        raise InvalidArgumentError(f"activation must be one of {allowed}; got {name!r}")
    return ACTIVATIONS[name]()


def _check_slope(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{name} must be a real number; got {type(value).__name__}")
    return float(value)
