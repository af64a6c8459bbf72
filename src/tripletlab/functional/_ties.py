"""Exact decisions on ties: refine the few distance entries a GEMM cannot decide.

A distance matrix from one GEMM (‖x_a‖² + ‖x_n‖² − 2⟨x_a, x_n⟩ on centred rows, or
1 − ⟨x̂_a, x̂_n⟩) is fast but carries a rounding error that depends on where the rows sit in the
batch: two identical rows come out ~1e-7 apart in float32, an exact tie d_an = d_ap becomes a
strict inequality one way or the other, and reordering the batch changes the decision.

The loss decisions only compare distances with a few *critical values* per anchor (0, each
d_ap and each d_ap + m for triplets; 0 and the margin for pairs). With a bound E on the GEMM
error, an entry whose interval [v − E, v + E] contains no critical value decides exactly as
the direct difference would; the others (few: the ties, the duplicates and the rare near-ties)
are recomputed directly, row pair by row pair, in a way that depends on the two rows only —
in float64 for float32 inputs, then rounded, so equal pairs give equal bits. Every decision
(loss, its statistics, the brute-force reference) is then made on the same numbers, whatever
the order of the batch.

Error bound (Higham, "Accuracy and Stability of Numerical Algorithms", §3.1): a sum of n
rounded products has error ≤ γ_n Σ|terms|, γ_n ≈ n·u. The GEMM entry sums D + 2 terms of total
magnitude ≤ 2(s_a + s_n) (s = ‖centred row‖², Cauchy–Schwarz), the squared norms D terms each,
centring and the direct difference a few u·(s_a + s_n) more: |v − direct| ≤ (5D + 12)·u·(s_a +
s_n). :data:`_BOUND_PER_DIM` and :data:`_BOUND_CONSTANT` take (6D + 16)·u, ≥ 1.2× that. For the cosine
distance the rows are unit vectors, so s = 1 (0 for a zero row, whose distances are exactly 1).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Error bound per embedding dimension, in units of u·(s_a + s_n) (see the module docstring).
_BOUND_PER_DIM = 6
#: Constant part of the error bound, same units.
_BOUND_CONSTANT = 16
#: Relative slack around each critical value, in units of u: covers the rounding of the
#: critical value itself (d_ap + m, its square for the euclidean metric, √m) and of the test.
_CRITICAL_SLACK = 8
#: Elements of the (rows, M) flag computation processed at once (bounded temporaries).
_FLAG_BLOCK_ELEMENTS = 2**20


def error_scale(dim: int, dtype: torch.dtype) -> float:
    """γ with |GEMM entry − direct entry| ≤ γ·(s_a + s_n) for rows of dimension ``dim``."""
    unit_roundoff = torch.finfo(dtype).eps / 2
    return (_BOUND_PER_DIM * dim + _BOUND_CONSTANT) * unit_roundoff


def critical_slack(dtype: torch.dtype) -> float:
    """The relative slack around a critical value (:data:`_CRITICAL_SLACK` units u)."""
    return _CRITICAL_SLACK * torch.finfo(dtype).eps / 2


def widen(x: Tensor) -> Tensor:
    """The rows in float64 (float32 and lower), for :func:`direct_squared`; converted once."""
    return x if x.dtype == torch.float64 else x.to(torch.float64)


def direct_squared(
    x_wide: Tensor, y_wide: Tensor, rows: Tensor, cols: Tensor, dtype: torch.dtype
) -> Tensor:
    """‖x[rows] − y[cols]‖² pair by pair from the two (:func:`widen`-ed) rows only, in ``dtype``.

    For float32 rows the differences and squares are exact in float64 and the rounded sum is
    the correctly rounded distance but for a double rounding once in ~2²⁹: identical pairs give
    identical bits wherever they sit in the batch.
    """
    step = max(1, _DIRECT_ELEMENTS_PER_CHUNK // max(1, x_wide.shape[1]))
    if rows.numel() <= step:  # one block: the same operations without the loop's slicing
        diff = x_wide.index_select(0, rows).sub_(y_wide.index_select(0, cols))
        return torch.sum(diff.square_(), 1).to(dtype)
    squared = torch.empty(rows.shape, dtype=x_wide.dtype, device=x_wide.device)
    for start in range(0, rows.numel(), step):
        chunk = slice(start, start + step)
        diff = x_wide.index_select(0, rows[chunk])
        diff.sub_(y_wide.index_select(0, cols[chunk]))
        torch.sum(diff.square_(), 1, out=squared[chunk])
    return squared.to(dtype)


#: Float64 elements of the (pairs, D) differences taken at once by :func:`direct_squared`:
#: 512 kB blocks stay in cache and below the allocator's mmap threshold (a fresh multi-MB
#: block page-faults on every call: measured B·K = 3840 pairs, D = 128, in one block: 12 ms
#: of a 32 ms semi-hard call; in 512 kB blocks, in place: ~1.5 ms).
_DIRECT_ELEMENTS_PER_CHUNK = 2**16


def direct_cosine(
    x_hat_wide: Tensor, y_hat_wide: Tensor, rows: Tensor, cols: Tensor, dtype: torch.dtype
) -> Tensor:
    """1 − cos as ‖x̂ − ŷ‖²/2 pair by pair (exactly 0 for identical directions); 1 where a
    row is zero (its cosine is defined as 0). The arguments are the :func:`widen`-ed unit
    rows (computed in the working dtype)."""
    half = direct_squared(x_hat_wide, y_hat_wide, rows, cols, dtype) / 2
    zero = (x_hat_wide.index_select(0, rows) == 0).all(1) | (
        y_hat_wide.index_select(0, cols) == 0
    ).all(1)
    return torch.where(zero, torch.ones_like(half), half)


#: Pairs recomputed directly at once: the temporaries are a few (pairs, D) float64 blocks
#: (16 MB each at D = 128), however many pairs a batch has (B·K positives: 131,072 at
#: B = 8192, K = 16 — 0.5 GB of temporaries in one go).
_DIRECT_PAIRS_PER_CHUNK = 2**14


def refine_pairs_(values: Tensor, rows: Tensor, cols: Tensor, direct) -> None:
    """Overwrite ``values[rows, cols]`` with ``direct(rows, cols)`` (in place, no autograd)."""
    if rows.numel() <= _DIRECT_PAIRS_PER_CHUNK:
        values[rows, cols] = direct(rows, cols)
        return
    for start in range(0, rows.numel(), _DIRECT_PAIRS_PER_CHUNK):
        chunk = slice(start, start + _DIRECT_PAIRS_PER_CHUNK)
        values[rows[chunk], cols[chunk]] = direct(rows[chunk], cols[chunk])


def refine_near_critical_(
    values: Tensor,
    row_size: Tensor,
    col_size: Tensor,
    gamma: float,
    critical_low: Tensor,
    critical_high: Tensor,
    direct,
    skip_diagonal: bool = False,
    exact_columns: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Recompute the entries of ``values`` whose error interval meets a critical interval.

    Args:
        values: (B, M) GEMM distances (the space the error bound is stated in), refined in
            place.
        row_size, col_size: (B,) and (M,) the s_a, s_n of the bound E = γ·(s_a + s_n).
        gamma: :func:`error_scale`.
        critical_low, critical_high: (B, J) the ends of each row's critical intervals, each
            sorted ascending on its own (+inf padding allowed), ≥ 0.
        direct: callable (rows, cols) → the directly computed entries.
        skip_diagonal: leave the diagonal alone (a batch against itself: it is exactly 0).
        exact_columns: optional ``(columns, mask)``, (B, K) entries already computed
            directly (the positives): never flagged again. Each critical value d_ap + 0 sits
            on its own entry, so without this every positive would be recomputed twice.

    Returns:
        The (unique, ascending) rows in which an entry was refined.
    """
    n_rows, n_cols = values.shape
    no_rows = torch.zeros(0, dtype=torch.long, device=values.device)
    if n_rows == 0 or n_cols == 0 or critical_low.shape[1] == 0:
        return no_rows
    slack = critical_slack(values.dtype)
    low = (critical_low * (1 - slack)).contiguous()
    high = (critical_high * (1 + slack)).contiguous()
    step = max(1, _FLAG_BLOCK_ELEMENTS // n_cols)
    flagged_rows = []
    for start in range(0, n_rows, step):
        block = slice(start, min(n_rows, start + step))
        v = values[block]
        bound = (row_size[block, None] + col_size[None, :]) * gamma
        near = _meets_critical(v - bound, v + bound, low[block], high[block])
        if skip_diagonal:
            near.diagonal(offset=start).fill_(False)
        if exact_columns is not None:
            _unflag_(near, exact_columns[0][block], exact_columns[1][block])
        r, c = near.nonzero(as_tuple=True)
        r = r + start
        refine_pairs_(values, r, c, direct)
        flagged_rows.append(r)
    return torch.unique(torch.cat(flagged_rows)) if flagged_rows else no_rows


#: Up to this many (row, critical value, column) comparisons a block, the intervals are
#: tested by one broadcast comparison; above, by two binary searches per entry (~20 ns a
#: search, but no (rows, J, M) temporaries: above 256 kB of them, fresh on every call, their
#: page faults cost more — measured semi-hard B = 256, K = 16, 1 thread: 21 → 17 ms).
_BROADCAST_MAX_ELEMENTS = 2**18


def _meets_critical(lower: Tensor, upper: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """(rows, M) bool: does [lower, upper] meet some interval [low_j, high_j] of its row?"""
    n_rows, n_cols = lower.shape
    if n_rows * n_cols * low.shape[1] <= _BROADCAST_MAX_ELEMENTS:
        return _meets_critical_by_broadcast(lower, upper, low, high)
    return _meets_critical_by_search(lower, upper, low, high)


def _meets_critical_by_broadcast(lower: Tensor, upper: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """:func:`_meets_critical` by one (rows, J, M) comparison."""
    meets = (low[:, :, None] <= upper[:, None, :]) & (high[:, :, None] >= lower[:, None, :])
    return meets.any(1)


def _meets_critical_by_search(lower: Tensor, upper: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """:func:`_meets_critical` by two binary searches per entry (``low``, ``high`` sorted).

    The number of intervals meeting [lower, upper] is #{low_j ≤ upper} − #{high_j < lower}
    (every interval with high_j < lower has low_j ≤ upper too), whatever their order.
    """
    upto = torch.searchsorted(low, upper, right=True)
    below = torch.searchsorted(high, lower, right=False)
    return upto > below


def _unflag_(near: Tensor, columns: Tensor, mask: Tensor) -> None:
    """Clear ``near`` at the valid ``columns[mask]`` of each row, in place.

    Invalid slots may point anywhere (a real column of another kind): they are redirected to
    the row's first valid column, and rows without one write back their own flags.
    """
    if columns.shape[1] == 0:
        return
    has_any = mask[:, :1]
    index = torch.where(mask, columns, columns[:, :1])
    keep = near.gather(1, index) & ~has_any
    near.scatter_(1, index, keep)
