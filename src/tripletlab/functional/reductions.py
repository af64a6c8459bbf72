"""Reductions of per-triplet (or per-pair) losses.

* ``"mean"``        — the sum over all valid elements divided by their number,
* ``"mean_active"`` — the sum divided by the number of elements with loss > 0 (PML's default),
* ``"sum"``         — the sum,
* ``"none"``        — the per-element values.

An empty input, or one with no active element, reduces to exactly 0 with zero gradients:
the division is by max(count, 1), never by 0, so no NaN reaches a training loop.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

Reduction = Literal["mean", "mean_active", "sum", "none"]
REDUCTIONS: tuple[str, ...] = ("mean", "mean_active", "sum", "none")


def reduce_loss(values: Tensor, reduction: str) -> Tensor:
    """Reduce per-element losses ``values`` (any shape) as named by ``reduction``."""
    if reduction == "none":
        return values
    total = values.sum()
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / max(values.numel(), 1)
    if reduction == "mean_active":
        return total / (values.detach() > 0).sum().clamp_min(1)
    raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")


def reduce_total(
    total: Tensor, count: Tensor | int, active: Tensor | int, reduction: str
) -> Tensor:
    """Reduce a precomputed sum over ``count`` valid elements of which ``active`` have loss > 0.

    Used by batch losses that never list their triplets one by one.
    """
    if reduction == "sum":
        return total
    denominator = count if reduction == "mean" else active
    if reduction not in ("mean", "mean_active"):
        raise ValueError(
            f"reduction must be 'mean', 'mean_active' or 'sum' here; got {reduction!r}"
        )
    if isinstance(denominator, Tensor):
        return total / denominator.clamp_min(1).to(total.dtype)
    return total / max(int(denominator), 1)
