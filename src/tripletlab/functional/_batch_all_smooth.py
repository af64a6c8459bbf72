"""The smoothed batch-all loss (μ > 0): every positive slot an elementwise pass over (B, M).

    Σ_{p, n} μ·softplus((d_ap − d_an + m)/μ),  ∂/∂d_ap = Σ_n σ(t/μ),  ∂/∂d_an = −Σ_p σ(t/μ)

There is no closed form per bucket (unlike the hinge of :mod:`tripletlab.functional.batch_all`):
O(B²K) time, processed in row chunks so that the temporaries stay within ``memory_budget``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tripletlab.functional._batch_input import BatchInput, row_chunks


class _BatchAllSmooth(torch.autograd.Function):
    """Per-anchor smoothed batch-all sums, K positive slots at a time, within a memory budget."""

    @staticmethod
    def forward(
        ctx, graph, values, positives, positive_mask, batch, margin, smoothing, memory_budget
    ):  # type: ignore[override]
        d = graph.detach() if values is None else values
        n_anchor, _ = d.shape
        per_anchor = torch.zeros(n_anchor, dtype=d.dtype, device=d.device)
        active = torch.zeros(n_anchor, dtype=torch.long, device=d.device)
        for rows, x, valid in _smooth_chunks(batch, d, margin, memory_budget):
            terms = torch.nn.functional.softplus(x, beta=1.0 / smoothing, threshold=20.0)
            terms = torch.where(valid, terms, 0)
            per_anchor[rows] = terms.sum((1, 2))
            active[rows] = (terms > 0).sum((1, 2))
        ctx.save_for_backward(d)
        ctx.from_squared = values is not None
        ctx.batch, ctx.margin, ctx.smoothing = batch, margin, smoothing
        ctx.memory_budget = memory_budget
        ctx.mark_non_differentiable(active)
        return per_anchor, active

    @staticmethod
    def backward(ctx, grad_per_anchor, _grad_active):  # type: ignore[override]
        (d,) = ctx.saved_tensors
        batch = ctx.batch
        grad = torch.zeros_like(d, dtype=grad_per_anchor.dtype)
        grad_positive = torch.zeros(batch.positives.shape, dtype=grad.dtype, device=d.device)
        for rows, x, valid in _smooth_chunks(batch, d, ctx.margin, ctx.memory_budget):
            slope = torch.where(valid, torch.sigmoid(x / ctx.smoothing), 0)
            slope = slope * grad_per_anchor[rows, None, None]
            grad[rows] = -slope.sum(1)
            grad_positive[rows] = slope.sum(2)
        grad.scatter_add_(1, batch.positives, grad_positive)
        if ctx.from_squared:
            chain_rule_of_sqrt_(grad, d, ctx.memory_budget)
        return grad, None, None, None, None, None, None, None


def chain_rule_of_sqrt_(grad: Tensor, roots: Tensor, memory_budget: int) -> None:
    """In place: ∂L/∂S = ∂L/∂D / (2D) for D = √S, and 0 where D = 0 (a finite subgradient)."""
    n_rows, n_col = grad.shape
    for rows in row_chunks(n_rows, 8 * max(1, n_col), memory_budget):
        block = grad[rows]
        root = roots[rows]
        block.div_(root).mul_(0.5).masked_fill_(root == 0, 0)


def _smooth_chunks(batch: BatchInput, d: Tensor, margin: float, memory_budget: int):
    """Row chunks of (rows, K, M) arguments t_i − d_an and the validity of each triplet."""
    n_anchor, n_col = d.shape
    k = batch.k
    thresholds = d.gather(1, batch.positives) + margin
    for rows in row_chunks(n_anchor, 16 * max(1, k) * max(1, n_col), memory_budget):
        x = thresholds[rows, :, None] - d[rows, None, :]
        valid = batch.positive_mask[rows, :, None] & batch.negative_mask(rows)[:, None, :]
        yield rows, x, valid
