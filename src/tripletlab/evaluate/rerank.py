"""k-reciprocal re-ranking (Zhong, Zheng, Cao & Li, CVPR 2017), memory-bounded.

Over all N = Q + G query and gallery embeddings, with d the squared euclidean distance and
d̂(i, j) = d(i, j) / maxₖ d(i, k) (each row scaled to [0, 1]):

1. N(i, k): the k nearest of i (i itself first); R(i, k) = {j ∈ N(i, k) : i ∈ N(j, k)}, the
   k-reciprocal neighbours;
2. R*(i) = R(i, k1) ∪ R(j, ⌊k1/2⌉) for each j ∈ R(i, k1) whose half-size set shares more than
   2/3 of its members with R(i, k1);
3. V(i, j) = exp(−d̂(i, j)) / Σ_{j' ∈ R*(i)} exp(−d̂(i, j')) for j ∈ R*(i), else 0;
4. local query expansion (k2 > 1): V(i) ← mean of V(j) over the k2 nearest j of i;
5. Jaccard distance d_J(i, j) = 1 − m / (2 − m), m = Σ_c min(V(i, c), V(j, c));
6. d*(i, j) = (1 − λ) d_J(i, j) + λ d̂(i, j), for queries i against gallery items j.

Defaults k1 = 20, k2 = 6, λ = 0.3 are the paper's Market-1501 values. The authors' code
(``re_ranking`` in github.com/zhunzhong07/person-re-ranking) holds several dense N×N matrices
— 70,000 images need ~40 GB. Here nothing N×N or Q×G is ever held:

* neighbour lists: N × max(k1+1, k2) indices, from (rows × N) distance blocks;
* V: a scipy sparse matrix with at most |R*(i)| ≤ (k1+1)(⌊k1/2⌉+2) entries per row; after
  query expansion at most k2 times that (for k1 = 20, k2 = 6: ≤ 1,386 per row, typically
  ~150 — 8 bytes + 4 bytes of index each);
* the final distances are produced one query chunk at a time, as (rows × G) blocks that
  :func:`~tripletlab.evaluate.ranking.rank_blocks` (and the re-id / DML protocols) consume
  directly; chunks are sized so that the block and the Jaccard products (Σ over the chunk's
  V entries of the gallery entries in the same column) fit ``memory_budget_bytes``.

Ties in a neighbour list are broken by the smaller index (the authors' ``np.argsort`` leaves
them to quicksort). Results equal the authors' algorithm computed in float64 (checked against
a line-for-line reference in the tests); float32 inputs get float32 distance blocks.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from tripletlab.evaluate.knn import DEFAULT_MEMORY_BUDGET
from tripletlab.evaluate.ranking import BYTES_PER_ENTRY, distance_blocks, smallest_k_stable
from tripletlab.functional._validation import check_embeddings
from tripletlab.functional.distances import row_distance

K1, K2, LAMBDA = 20, 6, 0.3
#: Bytes of one Jaccard product (row/column/flat indices and three float64 values).
_BYTES_PER_PRODUCT = 64
#: Bytes per entry of a final block besides its ranking: m, d̂ and d* in float64.
_BYTES_PER_FINAL_ENTRY = 24
#: Bytes per (row, candidate, member, member) comparison while expanding R(i, k1).
_BYTES_PER_COMPARISON = 2


def check_rerank_options(k1: int, k2: int, lambda_value: float) -> None:
    """ValueError naming a bad k1 (≥ 1), k2 (≥ 1) or λ (in [0, 1])."""
    for name, value in (("k1", k1), ("k2", k2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1; got {value!r}")
    if isinstance(lambda_value, bool) or not 0.0 <= float(lambda_value) <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1]; got {lambda_value!r}")


def k_reciprocal_blocks(
    query: Tensor,
    gallery: Tensor | None = None,
    *,
    k1: int = K1,
    k2: int = K2,
    lambda_value: float = LAMBDA,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
) -> Iterator[tuple[int, Tensor]]:
    """Re-ranked query × gallery distances d*, as (first row, (rows × G) float64 block).

    With ``gallery=None`` the queries are the gallery (CUB/Cars/SOP): the graph is built over
    the N queries once and the blocks are N × N (query i is gallery item i: pass
    ``exclude_self=True`` to the protocol). Feed the blocks to :func:`~tripletlab.evaluate.reid.reid_metrics_from_blocks`,
    :func:`~tripletlab.evaluate.dml_protocol.dml_metrics_from_blocks` or
    :func:`~tripletlab.evaluate.ranking.rank_blocks`.

    Example:
        >>> q = torch.tensor([[0.0], [5.0]])
        >>> g = torch.tensor([[0.2], [0.3], [5.1], [4.8]])
        >>> d = torch.cat([b for _, b in k_reciprocal_blocks(q, g, k1=2, k2=1)])
        >>> d.argmin(dim=1).tolist()
        [0, 2]
    """
    check_rerank_options(k1, k2, lambda_value)
    query = check_embeddings(query, "query")
    if gallery is None:
        features, gallery_start = query.detach(), 0
    else:
        gallery = check_embeddings(gallery, "gallery")
        if query.shape[1] != gallery.shape[1]:
            raise ValueError(
                f"query and gallery must have the same dimension; "
                f"got {query.shape[1]} and {gallery.shape[1]}"
            )
        features, gallery_start = torch.cat([query, gallery]).detach(), len(query)
    ranks, row_max = _neighbour_lists(features, max(k1 + 1, k2), memory_budget_bytes)
    weights = _expanded_weights(features, ranks, row_max, k1, memory_budget_bytes)
    if k2 > 1:
        weights = _local_query_expansion(weights, ranks[:, :k2])
    return _final_blocks(
        features, len(query), gallery_start, weights, row_max, lambda_value, memory_budget_bytes
    )


def _neighbour_lists(features: Tensor, k: int, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, min(k, N)) nearest indices of every item (itself included) and each row's max d."""
    n = len(features)
    k = min(k, n)
    ranks = np.empty((n, k), dtype=np.int64)
    row_max = np.empty(n, dtype=np.float64)
    for start, block in distance_blocks(
        features, features, metric="sqeuclidean", memory_budget_bytes=budget
    ):
        rows = torch.arange(len(block))
        block[rows, rows + start] = 0  # d(i, i) = 0 exactly, whatever the GEMM's rounding
        row_max[start : start + len(block)] = block.amax(dim=1).double().numpy()
        ranks[start : start + len(block)] = smallest_k_stable(block, k).numpy()
    return ranks, row_max


def _reciprocal(ranks: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """N(i, k) of the given rows (rows × k+1) and the mask of its k-reciprocal members."""
    forward = ranks[rows, : k + 1]
    backward = ranks[forward, : k + 1]  # rows × (k+1) × (k+1)
    return forward, (backward == rows[:, None, None]).any(axis=2)


def _expanded_weights(
    features: Tensor, ranks: np.ndarray, row_max: np.ndarray, k1: int, budget: int
) -> sp.csr_matrix:
    """The sparse N × N matrix V of steps 2–3 (rows of R*(i) weights, each summing to 1)."""
    n = len(features)
    half = int(np.around(k1 / 2))
    half_forward, half_mask = _reciprocal(ranks, np.arange(n), half)
    width = min(k1 + 1, ranks.shape[1])
    per_row = width * half_forward.shape[1] * width * _BYTES_PER_COMPARISON
    step = max(1, budget // max(per_row, 1))
    x = features.to(torch.float64)
    parts = []
    for start in range(0, n, step):
        rows = np.arange(start, min(n, start + step))
        members = _expansion_members(ranks, rows, k1, half_forward, half_mask)
        parts.append(_row_weights(x, rows, members, row_max))
    row_index = np.concatenate([p[0] for p in parts])
    col_index = np.concatenate([p[1] for p in parts])
    values = np.concatenate([p[2] for p in parts])
    return sp.csr_matrix((values, (row_index, col_index)), shape=(n, n))


def _expansion_members(
    ranks: np.ndarray,
    rows: np.ndarray,
    k1: int,
    half_forward: np.ndarray,
    half_mask: np.ndarray,
) -> np.ndarray:
    """(rows × W) members of R*(i), sorted, −1 padded, each index once (step 2)."""
    forward, mask = _reciprocal(ranks, rows, k1)
    cand_members = half_forward[forward]  # rows × (k1+1) × (h+1)
    cand_mask = half_mask[forward] & mask[:, :, None]
    recip = np.where(mask, forward, -1)  # −1 never equals a member
    shared = (cand_members[..., None] == recip[:, None, None, :]).any(axis=3) & cand_mask
    accept = mask & (shared.sum(axis=2) > 2 / 3 * cand_mask.sum(axis=2))
    added = np.where(accept[..., None] & cand_mask, cand_members, -1).reshape(len(rows), -1)
    members = np.sort(np.concatenate([recip, added], axis=1), axis=1)
    members[:, 1:][members[:, 1:] == members[:, :-1]] = -1
    return members


def _row_weights(
    x: Tensor, rows: np.ndarray, members: np.ndarray, row_max: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COO (row, column, weight) of V for the given rows (step 3), exact pair distances."""
    local, position = np.nonzero(members >= 0)
    row_index, col_index = rows[local], members[local, position]
    d = row_distance(x[row_index], x[col_index], "sqeuclidean").numpy()
    scale = np.where(row_max[row_index] > 0, row_max[row_index], 1.0)
    weight = np.exp(-d / scale)
    totals = np.bincount(local, weights=weight, minlength=len(rows))
    return row_index, col_index, weight / totals[local]


def _local_query_expansion(weights: sp.csr_matrix, nearest: np.ndarray) -> sp.csr_matrix:
    """Step 4: V ← A V with A(i, j) = 1/k2 for the k2 nearest j of i."""
    n, k2 = nearest.shape
    average = sp.csr_matrix(
        (np.full(n * k2, 1.0 / k2), (np.repeat(np.arange(n), k2), nearest.reshape(-1))),
        shape=(n, n),
    )
    return (average @ weights).tocsr()


def _final_blocks(
    features: Tensor,
    n_query: int,
    gallery_start: int,
    weights: sp.csr_matrix,
    row_max: np.ndarray,
    lambda_value: float,
    budget: int,
) -> Iterator[tuple[int, Tensor]]:
    """Steps 5–6, one query chunk at a time (queries: rows 0…n_query−1; gallery: rows from
    ``gallery_start`` — n_query for a separate gallery, 0 when the queries are the gallery)."""
    n_gallery = len(features) - gallery_start
    gallery_columns = weights[gallery_start:].tocsc()  # column c → gallery rows using c
    column_counts = np.diff(gallery_columns.indptr)
    query_rows = weights[:n_query].tocsr()
    cost = (query_rows != 0).astype(np.int64) @ column_counts  # Jaccard products per query
    max_rows = max(1, budget // ((BYTES_PER_ENTRY + _BYTES_PER_FINAL_ENTRY) * max(n_gallery, 1)))
    gallery = features[gallery_start:]
    start = 0
    for stop in _chunk_stops(cost, max_rows, max(1, budget // _BYTES_PER_PRODUCT)):
        overlap = _min_overlap(query_rows[start:stop], gallery_columns, n_gallery)
        jaccard = 1 - overlap / (2 - overlap)
        _, block = next(
            distance_blocks(features[start:stop], gallery, metric="sqeuclidean", rows=stop - start)
        )
        scale = np.where(row_max[start:stop] > 0, row_max[start:stop], 1.0)
        original = block.double().numpy() / scale[:, None]
        final = (1 - lambda_value) * jaccard + lambda_value * original
        yield start, torch.from_numpy(final)
        start = stop


def _chunk_stops(cost: np.ndarray, max_rows: int, max_products: int) -> Iterator[int]:
    """Ends of consecutive query chunks of ≤ max_rows rows and ≤ max_products products
    (a single query over the product budget still forms its own chunk)."""
    start, n = 0, len(cost)
    cumulative = np.concatenate([[0], np.cumsum(cost)])
    while start < n:
        limit = np.searchsorted(cumulative, cumulative[start] + max_products, side="right") - 1
        stop = min(n, start + max_rows, max(limit, start + 1))
        yield int(stop)
        start = int(stop)


def _min_overlap(rows: sp.csr_matrix, columns: sp.csc_matrix, n_gallery: int) -> np.ndarray:
    """m(i, j) = Σ_c min(V(i, c), V(j, c)) for the chunk's rows i and every gallery j."""
    coo = rows.tocoo()
    counts = np.diff(columns.indptr)[coo.col]
    total = int(counts.sum())
    segment = np.repeat(np.cumsum(counts) - counts, counts)
    pointer = np.repeat(columns.indptr[coo.col], counts) + (np.arange(total) - segment)
    gallery_row = columns.indices[pointer]
    value = np.minimum(np.repeat(coo.data, counts), columns.data[pointer])
    flat = np.repeat(coo.row, counts).astype(np.int64) * n_gallery + gallery_row
    overlap = np.bincount(flat, weights=value, minlength=rows.shape[0] * n_gallery)
    return overlap.reshape(rows.shape[0], n_gallery)
