"""A small batch's distances from one float64 GEMM, exact where a dense loss form decides.

The dense pair forms (:mod:`._dense_pairs`, :mod:`._dense_semi_hard`) compare every (anchor,
positive) pair with every column at once: t = c − D(a, n) for a critical value c per pair
(d_ap + m for the batch-all hinge, d_ap for the semi-hard selection). Instead of computing
the whole matrix by direct differences (a float64 B·B·D ``cdist`` pass: ~2 ms at B = 128) or
refining it through the general path's index machinery (~60 operator calls), they take

1. the Gram-matrix distances ‖x_a‖² + ‖x_n‖² − 2⟨x_a, x_n⟩ computed in float64 (0.1–0.3 ms
   more than float32 at B ≤ 256) and rounded to the compute dtype;
2. a screen of the (pairs, B) differences t they compute anyway. An entry v differs from its
   direct value by at most E + 2u·v: the float64 GEMM error E = 2γ·max_a s_a
   (:func:`~tripletlab.functional._ties.error_scale` in float64; s_a the squared norm, at
   most D·max|x|², so no host synchronisation beyond the input check's; 1 for a unit row)
   and the two roundings to the compute dtype (unit roundoff u). Near a decision v ≈ c
   (refine units: squared for ``"euclidean"``), and c comes from the matrix too, so an entry
   with |t| > bound(c) decides as it does on the direct matrix:

       bound(c) = 2(E + r·c)                  (refine units = metric units)
       bound(c) = 2(E / max(c, √E) + r·c)     (euclidean: |√S − c| ≤ |S − c²| / c, and
                                               √S ≤ c − √E cannot hold when c < √E)

   with r = 2u plus the critical values' own slack (:func:`~._ties.critical_slack`). One
   minimum of |t| against the largest bound (:meth:`ScreenedDistances.any_near`) clears most
   batches; otherwise the entries within it (true ties, duplicates, near-ties within a few
   ulps) and their pairs' d_ap are recomputed directly before deciding. For ``"euclidean"``
   the entries within E of 0 are always recomputed (their root's error is ~√E and its
   gradient 1/(2D)): one minimum over the off-diagonal entries finds whether there are any.

Every decision is then the one the direct matrix gives, as in the general path (whose
refinement screens the same intervals, one (B, K, M) test per batch).

Shapes: x (B, D); screens (P, B) for P pairs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from tripletlab.functional._refined_distances import COSINE_EPS, unit_rows
from tripletlab.functional._ties import (
    critical_slack,
    direct_cosine,
    direct_squared,
    error_scale,
    refine_pairs_,
    widen,
)


def _gram_squared(x: Tensor) -> tuple[Tensor, Tensor]:
    """(‖x_a − x_n‖² (B, B) in x's dtype, x in float64) from one float64 GEMM.

    Not centred: in float64 the cancellation of ‖x_a‖² + ‖x_n‖² − 2⟨x_a, x_n⟩ costs
    2⁻⁵³-relative errors of the norms, which the screen's bound E accounts for.
    """
    wide = widen(x)
    norms = (wide * wide).sum(1)
    squared = torch.addmm(norms[:, None] + norms, wide, wide.T, alpha=-2)
    squared.clamp_min_(0).fill_diagonal_(0)
    return squared.to(x.dtype), wide


def _gram_cosine(x_hat: Tensor, norm: Tensor) -> tuple[Tensor, Tensor]:
    """(1 − ⟨x̂_a, x̂_n⟩ (B, B) in x̂'s dtype, x̂ in float64) from one float64 GEMM of the unit
    rows (x̂ in the rows' dtype, as the direct cosine takes them); zero rows at 1."""
    wide = widen(x_hat)
    dist = torch.addmm(torch.ones((), dtype=wide.dtype), wide, wide.T, alpha=-1)
    dist.clamp_min_(0).diagonal().copy_(norm <= COSINE_EPS)
    return dist.to(x_hat.dtype), wide


def _cosine_matrix_backward(grad: Tensor, x_hat: Tensor, norm: Tensor) -> Tensor:
    """As :class:`~._refined_distances._SelfCosineDistances`' backward, in fewer operator calls
    (one B×B sum more: small batches only): ∂L/∂x = −(I − x̂x̂ᵀ)(G + Gᵀ)x̂ / ‖x‖, zero rows 0."""
    grad_unit = (grad + grad.T) @ x_hat  # −∂L/∂x̂
    radial = (grad_unit * x_hat).sum(1, keepdim=True)
    tangent = (radial * x_hat).sub_(grad_unit).div_(norm[:, None])
    return torch.where((norm > COSINE_EPS)[:, None], tangent, 0)


def _squared_matrix_backward(grad: Tensor, x: Tensor) -> Tensor:
    """∂L/∂x (B, D) from ∂L/∂S (B, B), S the squared distances of the rows x:
    2 Σ_n (G + Gᵀ)_an (x_a − x_n), on centred rows (the same value; centred, the two terms do
    not cancel). One B×B sum more than the general path's form: small batches only."""
    centred = x - x.mean(dim=0, keepdim=True)
    symmetric = grad + grad.T
    return torch.addmm(symmetric.sum(1, keepdim=True) * centred, symmetric, centred, alpha=-1).mul_(
        2
    )


class ScreenedDistances:
    """The distance matrix of a batch against itself for the dense forms.

    Computed without autograd: the losses' Functions differentiate through
    :meth:`matrix_backward`.

    Attributes:
        refined: (B, B) in refine units (squared for ``"euclidean"``).
        values: (B, B) detached distances in metric units (:attr:`refined` itself unless
            ``"euclidean"``).

    Example:
        >>> x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]]) + 0.1
        >>> screened = ScreenedDistances(x, "euclidean", 4.1)
        >>> screened.values[0].tolist()  # identical rows exactly 0 apart
        [0.0, 5.0, 0.0]
    """

    def __init__(self, x: Tensor, metric: str, largest: float) -> None:
        """``x`` (B, D) the rows (read without autograd), ``largest`` their largest |entry|."""
        self.metric = metric
        self._dtype = x.dtype
        gamma = error_scale(x.shape[1], torch.float64)
        unit_roundoff = torch.finfo(x.dtype).eps / 2
        self._relative = critical_slack(x.dtype) + 2 * unit_roundoff
        with torch.no_grad():
            x = x.detach()
            self._direct_pairs: Callable[[Tensor, Tensor, Tensor, Tensor, torch.dtype], Tensor]
            if metric == "cosine":
                x_hat, norm = unit_rows(x)
                self.refined, self._wide = _gram_cosine(x_hat, norm)
                self._saved: tuple[Tensor, ...] = (x_hat, norm)
                self._direct_pairs = direct_cosine
                self._error = 2 * gamma  # s = 1 (0 for a zero row)
            else:
                self.refined, self._wide = _gram_squared(x)
                self._saved = (x,)
                self._direct_pairs = direct_squared
                self._error = 2 * gamma * x.shape[1] * largest * largest  # s_a ≤ D·max|x|²
            if metric == "euclidean":
                self._refine_near_zero_()
            self.values = self.refined.sqrt() if metric == "euclidean" else self.refined

    def matrix_backward(self, grad: Tensor) -> Tensor:
        """∂L/∂x (B, D) from ∂L/∂:attr:`refined` (B, B) (squared distances for
        ``"euclidean"``): the Gram matrix's backward pass."""
        if self.metric == "cosine":
            return _cosine_matrix_backward(grad, *self._saved)
        return _squared_matrix_backward(grad, *self._saved)

    def _refine_near_zero_(self) -> None:
        """Recompute the entries within the error bound of 0 (duplicates, near-duplicates):
        the root amplifies their error to ~√E, and its gradient 1/(2D) the rest. One
        minimum over the off-diagonal entries decides whether there are any."""
        n = self.refined.shape[0]
        limit = 2 * self._error  # 2: the entry's rounding included
        off_diagonal = self.refined.view(-1)[1:].view(n - 1, n + 1)[:, :n] if n > 1 else None
        if off_diagonal is None or float(off_diagonal.amin()) > limit:
            return
        near_zero = self.refined <= limit
        near_zero.fill_diagonal_(False)  # exactly 0 already
        rows, cols = near_zero.nonzero(as_tuple=True)
        refine_pairs_(self.refined, rows, cols, self._direct)

    def _direct(self, rows: Tensor, cols: Tensor) -> Tensor:
        return self._direct_pairs(self._wide, self._wide, rows, cols, self._dtype)

    def _bound(self, critical: Tensor) -> Tensor:
        """(P,) the screen's bound (metric units) around critical values c: twice one
        entry's, since the critical values (d_ap + m) come from the matrix too."""
        error = self._error
        if self.metric == "euclidean" and error > 0:  # (E = 0: all rows 0, all exact)
            spread = torch.div(error, critical.clamp_min(math.sqrt(error)))
            return spread.add_(critical, alpha=self._relative).mul_(2)
        return critical.mul(self._relative).add_(error).mul_(2)

    def near(self, differences: Tensor, critical: Tensor) -> Tensor:
        """(P, X) bool: the entries of ``differences`` = critical − D (metric units, −inf
        where nothing is decided) within the screen's bound of their pair's critical value
        ``critical`` (P,)."""
        return differences.abs() <= self._bound(critical)[:, None]

    def any_near(self, differences: Tensor, critical: Tensor) -> bool:
        """Whether :meth:`near` may flag an entry: one minimum of |t| against the largest
        bound of any pair — 2(E + r·c_max), for ``"euclidean"`` 2(√E + r·c_max) since
        E/max(c, √E) ≤ √E — so that the common no-tie case costs four operator calls and no
        (P, B) mask."""
        if differences.numel() == 0:
            return False
        spread = math.sqrt(self._error) if self.metric == "euclidean" else self._error
        bound = 2 * (spread + float(critical.amax()) * self._relative)
        return float(differences.abs().amin()) <= bound

    def direct_rows(self, rows: Tensor) -> Tensor:
        """(R, B) the distances (metric units) of the given rows, every entry computed
        directly (the matrix itself is left as it is)."""
        n = self.refined.shape[1]
        columns = torch.arange(n, device=rows.device)
        direct = self._direct(rows.repeat_interleave(n), columns.repeat(rows.numel()))
        direct = direct.view(rows.numel(), n)
        return direct.sqrt_() if self.metric == "euclidean" else direct

    def make_exact_(self, rows: Tensor, cols: Tensor) -> None:
        """Recompute the entries (rows[i], cols[i]) directly, in place."""
        with torch.no_grad():
            refine_pairs_(self.refined, rows, cols, self._direct)
            if self.values is not self.refined:
                self.values[rows, cols] = self.refined[rows, cols].sqrt()
