"""A small batch's distances from one GEMM, exact where a dense loss form decides.

The dense small-batch forms (:mod:`tripletlab.functional._dense_small`) compare every
(anchor, positive) pair with every column at once: t = c − D(a, n) for a critical value c per
pair (d_ap + m for the batch-all hinge, d_ap for the semi-hard selection). Instead of
computing the whole matrix by direct differences (a float64 B·B·D pass: ~2 ms at B = 128) or
refining it through the general path's index machinery (~60 operator calls), they take

1. the GEMM matrix of :mod:`tripletlab.functional._refined_distances` (differentiable);
2. the positive pairs (a, p) recomputed directly — so every critical value is exact;
3. a screen of the (pairs, B) differences t they compute anyway. The GEMM error of an entry
   in refine units (squared for ``"euclidean"``) is at most E = 2γ·max_a s_a
   (:func:`~tripletlab.functional._ties.error_scale`; s_a the centred squared norm, 1 for a
   unit row), so an entry with |t| > bound(c) decides as its direct value would:

       bound(c) = E + slack·c                  (refine units = metric units)
       bound(c) = E / max(c, √E) + slack·c     (euclidean: |√S − c| ≤ |S − c²| / c, and
                                                √S ≤ c − √E cannot hold when c < √E)

   The entries within the bound (none on most batches; ties and duplicates otherwise) are
   recomputed directly before deciding; for ``"euclidean"`` so are the entries within E of 0
   (their root's error is ~√E).

Every decision is then the one the direct matrix gives, as in the general path (whose
refinement screens the same intervals with a per-entry bound, one (B, K, M) test).

Shapes: x (B, D); pairs ``anchors``, ``positives`` (P,) int64; screens (P, B).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from tripletlab.functional._refined_distances import (
    COSINE_EPS,
    _SelfCosineDistances,
    _SelfSquaredDistances,
    unit_rows,
)
from tripletlab.functional._ties import (
    critical_slack,
    direct_cosine,
    direct_squared,
    error_scale,
    refine_pairs_,
    widen,
)


class _SelfSquaredDistancesAndNorms(_SelfSquaredDistances):
    """:class:`_SelfSquaredDistances` in fewer operator calls for small batches, returning
    also the centred squared norms s (B,) (non-differentiable): the s_a of the error bound.

    The entry is s_a + s_n − 2⟨x_a, x_n⟩ with one rounding for the sum: its error is at most
    (2D + 4)·u·(s_a + s_n), within :func:`~tripletlab.functional._ties.error_scale`'s bound.
    """

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        # centred rows (distances are unchanged, cancellation is not); ‖x_a‖² + ‖x_n‖² by a
        # B×B broadcast (cheap at these sizes) and −2⟨x_a, x_n⟩ added by the GEMM
        centred = x - x.mean(dim=0, keepdim=True)
        norms = (centred * centred).sum(1)
        squared = torch.addmm(norms[:, None] + norms, centred, centred.T, alpha=-2)
        squared.clamp_min_(0).fill_diagonal_(0)
        ctx.save_for_backward(centred)
        ctx.mark_non_differentiable(norms)
        return squared, norms

    @staticmethod
    def backward(ctx, grad, _grad_norms):  # type: ignore[override]
        # as the parent's, in fewer operator calls (a B×B sum more: small batches only):
        # ∂L/∂x_a = 2 Σ_n (G + Gᵀ)_an (x_a − x_n)
        (centred,) = ctx.saved_tensors
        symmetric = grad + grad.T
        return torch.addmm(
            symmetric.sum(1, keepdim=True) * centred, symmetric, centred, alpha=-1
        ).mul_(2)


class ScreenedDistances:
    """The distance matrix of a batch against itself for the dense forms.

    Attributes:
        graph: (B, B) differentiable — the squared distances for ``"euclidean"``, the
            distances otherwise (its data are :attr:`refined`: the exact entries included).
        refined: (B, B) detached, in refine units (squared for ``"euclidean"``).
        values: (B, B) detached distances in metric units (:attr:`refined` itself unless
            ``"euclidean"``).

    Example:
        >>> x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
        >>> screened = ScreenedDistances(x, "euclidean", torch.tensor([0]), torch.tensor([2]))
        >>> screened.values[0].tolist()  # identical rows exactly 0 apart
        [0.0, 5.0, 0.0]
    """

    def __init__(self, x: Tensor, metric: str, anchors: Tensor, positives: Tensor) -> None:
        self.metric = metric
        gamma = error_scale(x.shape[1], x.dtype)
        self._slack = critical_slack(x.dtype)
        self._dtype = x.dtype
        with torch.no_grad():
            rows = x.detach()
            if metric == "cosine":
                unit, _ = unit_rows(rows)
                self._wide = widen(unit)
                self._direct_pairs = direct_cosine
                self._error = 2 * gamma  # s = 1 (0 for a zero row)
            else:
                self._wide = widen(rows)
                self._direct_pairs = direct_squared
        if metric == "cosine":
            self.graph = _SelfCosineDistances.apply(x)
        else:
            self.graph, norms = _SelfSquaredDistancesAndNorms.apply(x)
            # one host synchronisation (the loss makes a few: the scale, the pair list)
            self._error = 2 * gamma * float(norms.max()) if norms.numel() else 0.0
        with torch.no_grad():
            # the graph's Function keeps only the rows for its backward: its data may change
            self.refined = self.graph.detach()
            refine_pairs_(self.refined, anchors, positives, self._direct)
            if metric == "euclidean":
                self._refine_near_zero_()
            self.values = self.refined.sqrt() if metric == "euclidean" else self.refined

    def _refine_near_zero_(self) -> None:
        """Recompute the entries within the error bound of 0 (duplicates, near-duplicates):
        the root amplifies their error to ~√E, so they are exact before the root is taken
        (the general path's refinement has 0 among its critical values for the same reason)."""
        near_zero = self.refined <= self._error
        near_zero.fill_diagonal_(False)  # exactly 0 already
        rows, cols = near_zero.nonzero(as_tuple=True)
        if rows.numel():
            refine_pairs_(self.refined, rows, cols, self._direct)

    def _direct(self, rows: Tensor, cols: Tensor) -> Tensor:
        return self._direct_pairs(self._wide, self._wide, rows, cols, self._dtype)

    def near(self, differences: Tensor, critical: Tensor) -> Tensor:
        """(P, B) bool: the entries of ``differences`` = critical − D (metric units, ±inf
        where nothing is decided) within the screen's bound of their pair's critical value
        ``critical`` (P,)."""
        error = self._error
        if self.metric == "euclidean":
            bound = torch.div(error, critical.clamp_min(math.sqrt(error)))
            bound.add_(critical, alpha=self._slack)
        else:
            bound = critical.mul(self._slack).add_(error)
        return differences.abs() <= bound[:, None]

    def make_exact_(self, rows: Tensor, cols: Tensor) -> None:
        """Recompute the entries (rows[i], cols[i]) directly, in place."""
        with torch.no_grad():
            refine_pairs_(self.refined, rows, cols, self._direct)
            if self.values is not self.refined:
                self.values[rows, cols] = self.refined[rows, cols].sqrt()
