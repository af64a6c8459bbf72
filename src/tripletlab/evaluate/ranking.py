"""Full per-query rankings of a gallery, chunked over query rows: the core of every protocol.

A protocol ranks the *whole* gallery for each query (mAP and mINP need the position of the
last relevant item), skipping gallery items it ignores for that query:

* re-id: junk images (label −1) and images of the query's identity taken by the query's
  camera (Market-1501's official ``evaluation.m``; torchreid's ``eval_market1501``);
* query = gallery (CUB, Cars, SOP): the query itself.

:func:`distance_blocks` yields (rows × G) distance blocks; :func:`rank_blocks` sorts each row
(ascending distance, ties by ascending gallery index — a stable sort), drops ignored items and
reduces the block to per-query numbers at once (:class:`QueryRanks`), so at most one block is
ever held: rows = ``memory_budget_bytes // (BYTES_PER_ENTRY · G)``. Any other source of
distances (re-ranking, query expansion) feeds :func:`rank_blocks` the same way.

For a query with ``R`` relevant kept items at kept ranks r₁ < … < r_R (1-based):

* first rank r₁ (CMC: hit at k iff r₁ ≤ k),
* AP = (1/R) Σⱼ j / rⱼ (non-interpolated average precision, torchreid / fast-reid),
* AP_trapezoid = (1/R) Σⱼ ½ ((j−1)/(rⱼ−1) + j/rⱼ), with (j−1)/(rⱼ−1) = 1 when rⱼ = 1 (Market-1501's
  MATLAB ``compute_AP.m``),
* INP = R / r_R (Ye et al. 2021, "Deep Learning for Person Re-identification", §4.4),
* MAP@R = (1/R) Σ_{j: rⱼ ≤ R} j / rⱼ and R-precision = |{j: rⱼ ≤ R}| / R (Musgrave et al. 2020).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from tripletlab.evaluate.knn import DEFAULT_MEMORY_BUDGET
from tripletlab.functional._validation import check_choice, check_embeddings, compute_dtype
from tripletlab.functional.distances import METRICS

#: Bytes per (query, gallery) entry while one block is ranked: the distance (≤ 8), the sort's
#: values and order (≤ 8 + 8), five boolean masks (5) and the int32 kept ranks (4), rounded up
#: with room for the distance GEMM's temporaries. Measured: 19 bytes beyond a float32 block of
#: 100 × 100,000 (benchmarks/_memory.PeakMemory).
BYTES_PER_ENTRY = 56
_COSINE_EPS = 1e-12


@dataclass(frozen=True)
class QueryRanks:
    """Per-query results of ranking a gallery (arrays of length Q).

    Attributes:
        n_relevant: R, the relevant gallery items kept for the query (0: no valid match).
        first_rank: kept rank of the first relevant item (0 when R = 0).
        average_precision, average_precision_trapezoid, inp, map_at_r, r_precision: as in the
            module docstring (0 when R = 0).
        top: (Q, k) indices of the first k kept gallery items (−1 where fewer are kept).
        top_relevant: (Q, k) bool, whether each of them is relevant.
    """

    n_relevant: np.ndarray
    first_rank: np.ndarray
    average_precision: np.ndarray
    average_precision_trapezoid: np.ndarray
    inp: np.ndarray
    map_at_r: np.ndarray
    r_precision: np.ndarray
    top: np.ndarray
    top_relevant: np.ndarray

    @property
    def answerable(self) -> np.ndarray:
        """Queries with at least one relevant kept gallery item."""
        return self.n_relevant > 0


def block_rows(n_gallery: int, memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET) -> int:
    """Query rows per block so that ranking one block stays within the budget (≥ 1).

    Example:
        >>> block_rows(1000, 56_000 * 10)
        10
    """
    return max(1, memory_budget_bytes // (BYTES_PER_ENTRY * max(n_gallery, 1)))


def distance_blocks(
    queries: Tensor,
    gallery: Tensor,
    *,
    metric: str = "sqeuclidean",
    rows: int | None = None,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
) -> Iterator[tuple[int, Tensor]]:
    """(rows × G) distance blocks between query chunks and the gallery: yields (first row, block).

    The gallery is prepared once (centred by its mean for the squared-euclidean GEMM form, or
    L2-normalised for cosine), so a row's distances do not depend on the other rows of its chunk.

    Example:
        >>> q, g = torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [4.0]])
        >>> [(s, b.tolist()) for s, b in distance_blocks(q, g, rows=1)]
        [(0, [[1.0, 16.0]]), (1, [[1.0, 4.0]])]
    """
    check_choice(metric, "metric", METRICS)
    queries = check_embeddings(queries, "queries")
    gallery = check_embeddings(gallery, "gallery")
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"queries and gallery must have the same dimension; "
            f"got {queries.shape[1]} and {gallery.shape[1]}"
        )
    dtype = compute_dtype(queries, gallery)
    g = gallery.detach().to(dtype)
    rows = rows or block_rows(len(g), memory_budget_bytes)
    if metric == "cosine":
        g = torch.nn.functional.normalize(g, dim=1, eps=_COSINE_EPS)
        for start in range(0, len(queries), rows):
            q = torch.nn.functional.normalize(
                queries[start : start + rows].detach().to(dtype), dim=1, eps=_COSINE_EPS
            )
            yield start, (1 - q @ g.T).clamp_min_(0)
        return
    center = g.mean(dim=0, keepdim=True) if len(g) else torch.zeros(1, g.shape[1], dtype=dtype)
    g = g - center
    g_sq = (g * g).sum(dim=1)
    for start in range(0, len(queries), rows):
        q = queries[start : start + rows].detach().to(dtype) - center
        block = torch.addmm(g_sq[None, :], q, g.T, alpha=-2).add_((q * q).sum(dim=1)[:, None])
        block.clamp_min_(0)
        yield start, (block.sqrt_() if metric == "euclidean" else block)


def rank_blocks(
    blocks: Iterable[tuple[int, Tensor]],
    query_labels: np.ndarray,
    gallery_labels: np.ndarray,
    *,
    query_cameras: np.ndarray | None = None,
    gallery_cameras: np.ndarray | None = None,
    exclude_self: bool = False,
    junk_label: int | None = None,
    top_k: int = 10,
) -> QueryRanks:
    """Rank every block's rows and reduce them to :class:`QueryRanks`.

    Args:
        blocks: ``(first_row, (rows, G) distances)`` covering queries 0…Q−1 in order.
        query_labels, gallery_labels: (Q,) and (G,) integer labels.
        query_cameras, gallery_cameras: cameras; when both are given, gallery items of the
            query's label *and* camera are ignored (the re-id rule).
        exclude_self: query i is gallery item i (query = gallery): it is ignored for itself.
        junk_label: gallery items with this label are ignored for every query (re-id: −1).
        top_k: how many kept gallery items to record per query (for grids and search).

    Example:
        >>> d = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
        >>> r = rank_blocks([(0, d)], np.array([1]), np.array([2, 1, 1, 1]),
        ...                 query_cameras=np.array([0]), gallery_cameras=np.array([0, 0, 1, 1]))
        >>> r.first_rank.tolist(), r.average_precision.tolist(), r.inp.tolist()
        ([2], [0.5833333333333333], [0.6666666666666666])
    """
    query_labels = np.asarray(query_labels, dtype=np.int64)
    g_labels = torch.as_tensor(np.asarray(gallery_labels, dtype=np.int64))
    by_camera = query_cameras is not None and gallery_cameras is not None
    g_cams = torch.as_tensor(np.asarray(gallery_cameras, dtype=np.int64)) if by_camera else None
    q_cams = np.asarray(query_cameras, dtype=np.int64) if by_camera else None
    always_ignored = (
        torch.eq(g_labels, junk_label)
        if junk_label is not None
        else torch.zeros(len(g_labels), dtype=torch.bool)
    )
    parts: list[dict[str, np.ndarray]] = []
    expected = 0
    for start, block in blocks:
        if start != expected:
            raise ValueError(f"blocks must cover the queries in order; got row {start}")
        stop = start + len(block)
        labels = torch.as_tensor(query_labels[start:stop])
        same = torch.eq(labels[:, None], g_labels[None, :])
        ignore = always_ignored[None, :].expand(len(block), -1).clone()
        if g_cams is not None and q_cams is not None:
            ignore |= same & (torch.as_tensor(q_cams[start:stop])[:, None] == g_cams[None, :])
        if exclude_self:
            rows = torch.arange(len(block))
            ignore[rows, rows + start] = True
        parts.append(_rank_block(block.cpu(), same & ~ignore, ignore, top_k))
        expected = stop
    if expected != len(query_labels):
        raise ValueError(f"blocks covered {expected} of {len(query_labels)} queries")
    return QueryRanks(
        **{
            key: np.concatenate([p[key] for p in parts]) if parts else _empty(key, top_k)
            for key in _KEYS
        }
    )


_KEYS = (
    "n_relevant",
    "first_rank",
    "average_precision",
    "average_precision_trapezoid",
    "inp",
    "map_at_r",
    "r_precision",
    "top",
    "top_relevant",
)


def _empty(key: str, top_k: int) -> np.ndarray:
    if key == "top":
        return np.zeros((0, top_k), dtype=np.int64)
    if key == "top_relevant":
        return np.zeros((0, top_k), dtype=bool)
    return np.zeros(0, dtype=np.int64 if key in ("n_relevant", "first_rank") else np.float64)


def _rank_block(block: Tensor, good: Tensor, ignore: Tensor, top_k: int) -> dict[str, np.ndarray]:
    """Per-row numbers of one (rows, G) block (see the module docstring).

    Only the sort order (int64), two gathered masks and the kept ranks (int32) are (rows, G);
    every metric is then computed from the relevant entries alone (Σ R of them).
    """
    rows, n_gallery = block.shape
    if n_gallery == 0:
        return {
            key: np.zeros((rows, *_empty(key, top_k).shape[1:]), _empty(key, top_k).dtype)
            for key in _KEYS
        }
    order = torch.sort(block, dim=1, stable=True).indices
    kept = ~ignore.gather(1, order)
    relevant = good.gather(1, order)  # good excludes ignored items: relevant ⊂ kept
    kept_rank = kept.cumsum(dim=1, dtype=torch.int32)
    top, top_relevant = _top_kept(order, kept, relevant, kept_rank, top_k)
    del order, kept
    row, column = relevant.nonzero(as_tuple=True)  # row-major: each row's hits in rank order
    rank = kept_rank[row, column].double()
    del kept_rank, relevant
    n_relevant = torch.bincount(row, minlength=rows)
    first = torch.cumsum(n_relevant, 0) - n_relevant
    hit = (torch.arange(len(row)) - first[row] + 1).double()  # j: the hit's number in its row
    r = n_relevant[row].double()
    precision = hit / rank
    # Precision just before each hit; 1 at the first kept rank (MATLAB compute_AP.m).
    before = torch.where(rank > 1, (hit - 1) / (rank - 1).clamp_min(1), 1.0)
    within_r = (rank <= r).double()
    has = n_relevant > 0
    safe_r = n_relevant.clamp_min(1).double()

    def per_row(values: Tensor) -> np.ndarray:
        return (torch.bincount(row, weights=values, minlength=rows) / safe_r).numpy()

    first_rank = torch.zeros(rows, dtype=torch.float64)
    last_rank = torch.ones(rows, dtype=torch.float64)
    first_rank[has] = rank[first[has]]
    last_rank[has] = rank[first[has] + n_relevant[has] - 1]
    return {
        "n_relevant": n_relevant.numpy().astype(np.int64),
        "first_rank": first_rank.numpy().astype(np.int64),
        "average_precision": per_row(precision),
        "average_precision_trapezoid": per_row((before + precision) / 2),
        "inp": torch.where(has, n_relevant.double() / last_rank, 0.0).numpy(),
        "map_at_r": per_row(precision * within_r),
        "r_precision": per_row(within_r),
        "top": top,
        "top_relevant": top_relevant,
    }


def _top_kept(
    order: Tensor, kept: Tensor, relevant: Tensor, kept_rank: Tensor, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (and relevance) of the first k kept items per row, −1 / False padded."""
    rows = len(order)
    top = np.full((rows, k), -1, dtype=np.int64)
    top_relevant = np.zeros((rows, k), dtype=bool)
    if k == 0:
        return top, top_relevant
    row, column = (kept & (kept_rank <= k)).nonzero(as_tuple=True)
    slot = (kept_rank[row, column] - 1).long().numpy()
    top[row.numpy(), slot] = order[row, column].numpy()
    top_relevant[row.numpy(), slot] = relevant[row, column].numpy()
    return top, top_relevant


def smallest_k_stable(block: Tensor, k: int) -> Tensor:
    """Indices of the k smallest entries of each row, ties by ascending index (a stable sort),
    without sorting whole rows: a top-k, then a stable sort of the entries ≤ the k-th value.

    Example:
        >>> smallest_k_stable(torch.tensor([[3.0, 1.0, 1.0, 0.0]]), 3).tolist()
        [[3, 1, 2]]
    """
    kth = torch.topk(block, k, dim=1, largest=False).values[:, -1]
    rows, cols = (block <= kth[:, None]).nonzero(as_tuple=True)  # row-major, cols ascending
    values = block[rows, cols]
    order = torch.argsort(values, stable=True)
    order = order[torch.argsort(rows[order], stable=True)]
    rows, cols = rows[order], cols[order]
    counts = torch.bincount(rows, minlength=len(block))
    position = torch.arange(len(rows)) - (torch.cumsum(counts, 0) - counts)[rows]
    keep = position < k
    out = torch.empty(len(block), k, dtype=torch.long)
    out[rows[keep], position[keep]] = cols[keep]
    return out
