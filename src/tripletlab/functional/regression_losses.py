"""Regression losses of the lecture (seed 002): MSE, MAE, RMSE and Huber.

With residuals ``r = pred − target``:

* MSE  = mean(r²),  MAE = mean(|r|),  RMSE = √MSE,
* Huber(δ) = ½r² where |r| ≤ δ, else δ·(|r| − ½δ)  (the lecture's form; quadratic near 0 like
  MSE, linear in the tails like MAE, so one outlier weighs δ·|r| instead of r²).

float16/bfloat16 inputs are computed in float32 and the result is returned in the input dtype.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from tripletlab.functional.distances import safe_sqrt
from tripletlab.validation import (
    check_choice,
    check_positive,
    check_same_shape,
    compute_dtype,
)

ElementReduction = Literal["mean", "sum", "none"]
ELEMENT_REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")


def mse_loss(pred: Tensor, target: Tensor, reduction: ElementReduction = "mean") -> Tensor:
    """Mean squared error ``mean((pred − target)²)``.

    Example:
        >>> mse_loss(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0]))
        tensor(2.5000)
    """
    residual = _residual(pred, target, reduction)
    return _reduce(residual.square(), reduction).to(_out_dtype(pred, target))


def mae_loss(pred: Tensor, target: Tensor, reduction: ElementReduction = "mean") -> Tensor:
    """Mean absolute error ``mean(|pred − target|)``.

    Example:
        >>> mae_loss(torch.tensor([1.0, -2.0]), torch.tensor([0.0, 0.0]))
        tensor(1.5000)
    """
    residual = _residual(pred, target, reduction)
    return _reduce(residual.abs(), reduction).to(_out_dtype(pred, target))


def rmse_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Root mean squared error ``√mean((pred − target)²)`` over all elements (0-dim tensor).

    Same unit as the target (a "fair baseline" against MAE, as the lecture puts it); the
    gradient at a perfect fit is 0, not NaN.

    Example:
        >>> rmse_loss(torch.tensor([3.0, 4.0]), torch.tensor([0.0, 0.0]))
        tensor(3.5355)
    """
    residual = _residual(pred, target, "mean")
    mean_square = residual.square().mean() if residual.numel() else residual.sum()
    return safe_sqrt(mean_square).to(_out_dtype(pred, target))


def huber_loss(
    pred: Tensor, target: Tensor, delta: float = 1.0, reduction: ElementReduction = "mean"
) -> Tensor:
    """Huber loss: ``½r²`` for ``|r| ≤ δ``, else ``δ·(|r| − ½δ)``, with ``r = pred − target``.

    Equals :func:`torch.nn.functional.huber_loss` (which uses the same form).

    Reference: Huber, P. J. Robust Estimation of a Location Parameter. Ann. Math. Statist. 1964.

    Example:
        >>> huber_loss(torch.tensor([-10.0, 0.5]), torch.zeros(2), delta=1.0, reduction="none")
        tensor([9.5000, 0.1250])
    """
    delta = check_positive(delta, "delta")
    residual = _residual(pred, target, reduction)
    magnitude = residual.abs()
    quadratic = 0.5 * residual.square()
    linear = delta * (magnitude - 0.5 * delta)
    return _reduce(torch.where(magnitude <= delta, quadratic, linear), reduction).to(
        _out_dtype(pred, target)
    )


def _residual(pred: Tensor, target: Tensor, reduction: str) -> Tensor:
    check_choice(reduction, "reduction", ELEMENT_REDUCTIONS)
    for name, t in (("pred", pred), ("target", target)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor; got dtype {t.dtype}")
    check_same_shape(("pred", pred), ("target", target))
    dtype = compute_dtype(pred, target)  # float16/bfloat16 are computed in float32
    return pred.to(dtype) - target.to(dtype)


def _reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum()
    return values.sum() / max(values.numel(), 1)


def _out_dtype(pred: Tensor, target: Tensor) -> torch.dtype:
    return torch.promote_types(pred.dtype, target.dtype)
