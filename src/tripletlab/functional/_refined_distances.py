"""The distance matrix of a batch: one GEMM, then the entries near a decision made exact.

:func:`refined_distances` returns the (B, M) matrix every batch loss decides on. Entries are
GEMM values except the positives, the diagonal and the entries within the GEMM's error bound
of a critical value (:mod:`tripletlab.functional._ties`), which are computed directly from the
two rows — so identical rows are exactly 0 apart, ties stay ties, and a decision does not
depend on the order of the batch.

The batch against itself uses autograd Functions with a lean backward (two GEMMs, no B×B
temporaries beyond the incoming gradient); the euclidean metric is returned both as its
values and as the differentiable squared matrix, so that a loss can apply the chain rule
d√S/dS = 1/(2√S) in its own gradient buffer (the memory of the squared form).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from tripletlab.functional._ties import (
    direct_cosine,
    direct_squared,
    error_scale,
    refine_near_critical_,
    refine_pairs_,
    widen,
)
from tripletlab.functional.distances import pairwise_distances, safe_sqrt

#: Rows with a norm at most this are zero rows for the cosine distance (cos defined as 0).
COSINE_EPS = 1e-12


class _SelfSquaredDistances(torch.autograd.Function):
    """‖x_a − x_n‖² for all pairs of rows of x, with a symmetric one-GEMM backward."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        # centre (distances are unchanged, cancellation is not), then one GEMM of the
        # augmented rows [x, ‖x‖², 1]·[−2x, 1, ‖x‖²]ᵀ = ‖x_a‖² + ‖x_n‖² − 2⟨x_a, x_n⟩: no B×B
        # broadcast passes before the clamp
        xc = x - x.mean(dim=0, keepdim=True)
        sq = (xc * xc).sum(dim=1, keepdim=True)
        ones = torch.ones_like(sq)
        left = torch.cat([xc, sq, ones], dim=1)
        right = torch.cat([xc * -2, ones, sq], dim=1)
        squared = torch.mm(left, right.T).clamp_min_(0)
        squared.fill_diagonal_(0)
        ctx.save_for_backward(xc)
        return squared

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (xc,) = ctx.saved_tensors
        # ∂L/∂x_a = 2 Σ_n (G_an + G_na)(x_a − x_n): (G + Gᵀ)x as two GEMMs, no transposed sum
        row_weight = grad.sum(1) + grad.sum(0)
        return 2 * (row_weight[:, None] * xc - torch.addmm(grad @ xc, grad.T, xc))


class _DirectSelfSquaredDistances(_SelfSquaredDistances):
    """:class:`_SelfSquaredDistances` with every entry computed by direct differences.

    The forward pass is :func:`_direct_squared_matrix` (exact decisions without refinement,
    small batches only); the backward pass is the parent's two GEMMs.
    """

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        ctx.save_for_backward(x - x.mean(dim=0, keepdim=True))
        return _direct_squared_matrix(x.detach(), None).to(x.dtype)


class _SelfCosineDistances(torch.autograd.Function):
    """1 − ⟨x̂_a, x̂_n⟩ for all pairs of rows (x̂ = x/‖x‖, 0 for a zero row), lean backward.

    The diagonal is 0 for non-zero rows; a zero row has distance 1 to everything (itself
    included) and a zero gradient.
    """

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        x_hat, norm = unit_rows(x)
        dist = torch.addmm(torch.ones((), dtype=x.dtype), x_hat, x_hat.T, alpha=-1)
        dist.clamp_min_(0)
        dist.diagonal().copy_((norm <= COSINE_EPS).to(x.dtype))
        ctx.save_for_backward(x_hat, norm)
        return dist

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x_hat, norm = ctx.saved_tensors
        grad_hat = -torch.addmm(grad @ x_hat, grad.T, x_hat)
        radial = (grad_hat * x_hat).sum(1, keepdim=True)
        safe = torch.where(norm > COSINE_EPS, norm, torch.ones_like(norm))[:, None]
        grad_x = (grad_hat - radial * x_hat) / safe
        return torch.where((norm > COSINE_EPS)[:, None], grad_x, torch.zeros_like(grad_x))


class _DirectSelfCosineDistances(_SelfCosineDistances):
    """:class:`_SelfCosineDistances` with every entry computed by direct differences
    (:func:`_direct_cosine_matrix`, small batches only); the backward pass is the parent's."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        x_hat, norm = unit_rows(x.detach())
        ctx.save_for_backward(x_hat, norm)
        return _direct_cosine_matrix(x_hat, norm, None, None).to(x.dtype)


def unit_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    """(x̂, ‖x‖): rows divided by their norm, zero rows (norm ≤ COSINE_EPS) left at 0."""
    norm = x.norm(dim=1)
    # x / 0 is not finite, but only where the zero rows' 0 is taken instead (no autograd)
    x_hat = torch.where((norm > COSINE_EPS)[:, None], x / norm[:, None], 0)
    return x_hat, norm


def refined_distances(
    x: Tensor,
    metric: str,
    y: Tensor | None = None,
    positives: Tensor | None = None,
    positive_mask: Tensor | None = None,
    offsets: tuple[float, ...] = (),
    constants: tuple[float, ...] = (),
    roots_in_place: bool = False,
) -> tuple[Tensor, Tensor]:
    """Distances with exact decisions at the critical values; ``(graph, values)``.

    Critical values per row (in metric units): 0, ``d_ap + o`` for each positive and offset
    ``o`` (triplet losses: offsets (0, m)), and each of ``constants`` (pair losses: m).

    Args:
        x: (B, D) rows in the compute dtype (attached to the graph if gradients are wanted).
        metric: ``"sqeuclidean"``, ``"euclidean"`` or ``"cosine"``.
        y: (M, D) reference rows, or None for the batch against itself.
        positives, positive_mask: (B, K) column indices of the positives and their validity.
        offsets, constants: see above.
        roots_in_place: for ``"euclidean"`` with a gradient, take the square roots in the
            storage of ``graph`` (one B×M matrix less): ``graph`` is then only the autograd
            handle of the squared matrix, its data are the distances (the caller applies the
            chain rule itself, as batch-all does).

    Returns:
        ``graph``: the differentiable matrix — the squared distances for ``"euclidean"``, the
        distances otherwise; ``values``: the (B, M) distances in metric units (the same tensor
        as ``graph`` except for ``"euclidean"``, where it is detached when ``graph`` needs a
        gradient).
    """
    k = 0 if positives is None else positives.shape[1]
    exact_asked = bool(offsets or constants)  # no comparison asked for: nothing to make exact
    if exact_asked and direct_matrix_is_cheaper(x, y, k):
        return direct_distances(x, metric, y, roots_in_place)
    if metric == "cosine":
        graph = (
            _SelfCosineDistances.apply(x)
            if y is None
            else pairwise_distances(x, y, metric="cosine")
        )
    else:
        graph = (
            _SelfSquaredDistances.apply(x)
            if y is None
            else pairwise_distances(x, y, metric="sqeuclidean")
        )
    if exact_asked:
        with torch.no_grad():
            _refine_(
                graph,
                x.detach(),
                None if y is None else y.detach(),
                metric,
                positives,
                positive_mask,
                offsets,
                constants,
            )
    return _graph_and_values(graph, metric, roots_in_place)


def direct_distances(
    x: Tensor, metric: str, y: Tensor | None = None, roots_in_place: bool = False
) -> tuple[Tensor, Tensor]:
    """``(graph, values)`` as :func:`refined_distances`, every entry by direct differences.

    Exact decisions everywhere, no refinement; the cost is a B·M·D pass in float64 (see
    :func:`direct_matrix_is_cheaper`). The gradient is the GEMM form's.
    """
    if y is None:
        direct_self = (
            _DirectSelfCosineDistances if metric == "cosine" else _DirectSelfSquaredDistances
        )
        graph = direct_self.apply(x)
    else:
        graph = (
            _SelfCosineDistances.apply(x)
            if y is None
            else pairwise_distances(x, y, metric="cosine" if metric == "cosine" else "sqeuclidean")
        )
        with torch.no_grad():
            _direct_matrix_(graph, x.detach(), None if y is None else y.detach(), metric)
    return _graph_and_values(graph, metric, roots_in_place)


def _graph_and_values(
    graph: Tensor, metric: str, roots_in_place: bool = False
) -> tuple[Tensor, Tensor]:
    """The differentiable matrix and the distances in metric units (see refined_distances)."""
    if metric != "euclidean":
        return graph, graph
    with torch.no_grad():
        if graph.requires_grad:
            # the squared-distance Functions keep only their rows for the backward pass, so
            # their output's data may be overwritten
            return graph, graph.detach().sqrt_() if roots_in_place else graph.detach().sqrt()
        return graph, graph.sqrt_()


def differentiable_values(graph: Tensor, values: Tensor, metric: str) -> Tensor:
    """The distances attached to the graph (√ of the squared matrix for ``"euclidean"``)."""
    if metric == "euclidean" and graph is not values:
        return safe_sqrt(graph)
    return graph


#: Up to this many B·M·D multiply-adds, the whole matrix is computed directly (one fused
#: ``cdist`` pass in float64) instead of refining the entries near a decision: below it the
#: refinement's fixed cost (positive pairs, interval tests, gathers: ~25 operator calls)
#: exceeds the direct pass (measured on CPU: B = M = 64, D = 128: 0.3–0.4 ms direct against
#: 0.6–0.7 ms refined).
_DIRECT_MAX_WORK = 2**20
#: Above that, up to this much work, the direct pass still wins when the refinement must
#: recompute many positive pairs (B·K of them, gathered row by row): measured on CPU, 1
#: thread, D = 128, semi-hard / batch-all forward+backward: B = 128, K = 16: 6.8 / 5.5 ms
#: direct against 10.8 / 13.5 ms refined; B = 256, K = 16: 15.7 / 14.8 against 25.3 / 22.9;
#: but B = 128 and 256 with K = 4: 25–75 % slower direct.
_DIRECT_MAX_WORK_MANY_POSITIVES = 2**25
#: "Many positives": M ≤ this × K.
_DIRECT_COLUMNS_PER_POSITIVE = 16


def direct_matrix_is_cheaper(x: Tensor, y: Tensor | None, k: int = 0) -> bool:
    """Float32 (or lower) rows, small batches or many positives (``k`` a row): go direct.

    Not float64 rows: ``cdist`` returns the norm, and its square is the sum of squares only
    to a float64 rounding — which the final rounding to float32 absorbs, but float64 keeps.
    """
    if x.dtype == torch.float64:
        return False
    n_cols = x.shape[0] if y is None else y.shape[0]
    work = x.shape[0] * n_cols * max(1, x.shape[1])
    if work <= _DIRECT_MAX_WORK:
        return True
    many_positives = n_cols <= _DIRECT_COLUMNS_PER_POSITIVE * k
    return many_positives and work <= _DIRECT_MAX_WORK_MANY_POSITIVES


def _direct_matrix_(matrix: Tensor, x: Tensor, y: Tensor | None, metric: str) -> None:
    """Every entry of ``matrix`` (refine units) computed directly from its two rows, in place.

    For float32 (or lower) rows: the same numbers as
    :func:`~tripletlab.functional._ties.direct_squared` /
    :func:`~tripletlab.functional._ties.direct_cosine` but for a double rounding once in
    ~2²⁹ (the float64 norm is squared, then rounded): differences in float64, so identical
    pairs give identical bits and identical rows are exactly 0 apart, wherever they sit.
    """
    if metric == "cosine":
        x_hat, x_norm = unit_rows(x)
        y_hat, y_norm = (None, None) if y is None else unit_rows(y)
        matrix.copy_(_direct_cosine_matrix(x_hat, x_norm, y_hat, y_norm))
    else:
        matrix.copy_(_direct_squared_matrix(x, y))


def _direct_cosine_matrix(
    x_hat: Tensor, x_norm: Tensor, y_hat: Tensor | None, y_norm: Tensor | None
) -> Tensor:
    """(B, M) float64 1 − cos as ‖x̂_a − ŷ_n‖²/2 by differences; 1 where a row is zero
    (``y_hat`` None: the rows against themselves)."""
    squared = _direct_squared_matrix(x_hat, y_hat)
    col_norm = x_norm if y_norm is None else y_norm
    zero = (x_norm <= COSINE_EPS)[:, None] | (col_norm <= COSINE_EPS)[None, :]
    return torch.where(zero, 1.0, squared / 2)


def _direct_squared_matrix(x: Tensor, y: Tensor | None) -> Tensor:
    """(B, M) float64 ‖x_a − y_n‖² by differences (no Gram-matrix cancellation)."""
    left = widen(x)
    right = left if y is None else widen(y)
    norms = torch.cdist(left, right, compute_mode="donot_use_mm_for_euclid_dist")
    return norms.square_()


def _refine_(
    matrix: Tensor,
    x: Tensor,
    y: Tensor | None,
    metric: str,
    positives: Tensor | None,
    positive_mask: Tensor | None,
    offsets: tuple[float, ...],
    constants: tuple[float, ...],
) -> None:
    """Make the entries near a decision exact, in place (``matrix`` in refine units)."""
    columns = x if y is None else y
    wide: list[Tensor] = []  # the rows in float64, converted on the first refinement only

    def widened(left: Tensor, right: Tensor) -> list[Tensor]:
        if not wide:
            wide.append(widen(left))
            wide.append(wide[0] if right is left else widen(right))
        return wide

    if metric == "cosine":
        x_hat, x_norm = unit_rows(x)
        y_hat, y_norm = (x_hat, x_norm) if y is None else unit_rows(y)
        row_size = (x_norm > COSINE_EPS).to(x.dtype)
        col_size = (y_norm > COSINE_EPS).to(x.dtype)

        def direct(rows: Tensor, cols: Tensor) -> Tensor:
            left, right = widened(x_hat, y_hat)
            return direct_cosine(left, right, rows, cols, x.dtype)
    else:
        center = x.mean(dim=0, keepdim=True)
        row_size = ((x - center) ** 2).sum(1)
        col_size = row_size if y is None else ((columns - center) ** 2).sum(1)

        def direct(rows: Tensor, cols: Tensor) -> Tensor:
            left, right = widened(x, columns)
            return direct_squared(left, right, rows, cols, x.dtype)

    gamma = error_scale(x.shape[1], x.dtype)
    zero = torch.zeros((matrix.shape[0], 1), dtype=matrix.dtype, device=matrix.device)
    low, high = [zero], [zero]
    to_refine_units = _square if metric == "euclidean" else _identity
    if positives is not None and positive_mask is not None and positives.shape[1]:
        # the anchors' d_ap first (B·K direct pairs): the critical values are then exact
        rows = torch.arange(matrix.shape[0], device=matrix.device)[:, None].expand_as(positives)
        refine_pairs_(matrix, rows.reshape(-1), positives.reshape(-1), direct)
        d_ap = matrix.gather(1, positives)
        d_metric = d_ap.sqrt() if metric == "euclidean" else d_ap
        for offset in offsets:
            low.append(torch.where(positive_mask, to_refine_units(d_metric + offset), math.inf))
            high.append(low[-1])
    for constant in constants:
        low.append(torch.full_like(zero, to_refine_units(constant)))
        high.append(low[-1])
    refine_near_critical_(
        matrix,
        row_size,
        col_size,
        gamma,
        torch.cat(low, dim=1).sort(dim=1).values,
        torch.cat(high, dim=1).sort(dim=1).values,
        direct,
        skip_diagonal=y is None,
        exact_columns=None
        if positives is None or positive_mask is None
        else (positives, positive_mask),
    )


def _square(value):
    return value * value


def _identity(value):
    return value
