"""Exact k-nearest-neighbour search: the backend interface and the default torch backend.

Every retrieval metric in tripletlab is computed from one kNN search, through the
:class:`KNNBackend` protocol. The default backend, :class:`TorchKNN`, is exact: it computes
query-chunk × reference distance blocks with one GEMM each (‖q‖² + ‖r‖² − 2qrᵀ) and keeps
the ``k`` smallest per row, so memory is bounded by ``memory_budget_bytes`` however many
references there are. A faiss backend implements the same protocol in ``knn_faiss.py``.

Conventions every backend follows:

* distances are in the chosen metric (``"sqeuclidean"``, ``"euclidean"``, ``"cosine"``);
  the ranking is the same for ``"sqeuclidean"`` and ``"euclidean"``;
* each row of the result is sorted by ascending distance, ties (equal computed distances,
  e.g. duplicate references) broken by ascending reference index — a stable order, so
  results do not depend on the chunk size or the number of threads. Distances that are
  equal in exact arithmetic may differ in their last float bits (rounding of the GEMM
  form), and are then ordered by those bits;
* ``exclude[i]`` (a reference index, or −1 for none) is never returned for query ``i``:
  this is how a query is left out of its own neighbours when the queries are the
  references (``references=None`` does it automatically).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from tripletlab.functional.distances import METRICS
from tripletlab.validation import check_choice, check_embeddings, compute_dtype

DEFAULT_MEMORY_BUDGET = 512 * 2**20  # bytes of working memory for one distance block
_INDEX_BITS = 31  # non-negative float32 bit patterns fit in 31 bits; indices take the other 31
_COSINE_EPS = 1e-12


class KNNResult(NamedTuple):
    """The ``k`` nearest references of each query.

    Attributes:
        distances: (Q, k) float tensor, ascending along each row.
        indices: (Q, k) int64 tensor of reference indices (ties: ascending index).
    """

    distances: Tensor
    indices: Tensor


@runtime_checkable
class KNNBackend(Protocol):
    """What a kNN backend provides: one exact (or declared approximate) search.

    ``search(queries, k, references=None, *, metric="sqeuclidean", exclude=None)``

    Args:
        queries: (Q, D) float tensor.
        k: number of neighbours per query, 1 ≤ k ≤ number of eligible references.
        references: (N, D) float tensor, or None to search ``queries`` among themselves
            with each query's own index excluded.
        metric: ``"sqeuclidean"``, ``"euclidean"`` or ``"cosine"``.
        exclude: optional (Q,) int64 tensor: the reference index to leave out for each
            query, −1 for none (used when a chunk of the reference set is queried).

    Returns:
        :class:`KNNResult` with (Q, k) distances and indices, sorted as described in the
        module docstring.
    """

    def search(
        self,
        queries: Tensor,
        k: int,
        references: Tensor | None = None,
        *,
        metric: str = "sqeuclidean",
        exclude: Tensor | None = None,
    ) -> KNNResult: ...


class TorchKNN:
    """Exact kNN by chunked torch matmul, with bounded working memory.

    For each chunk of queries, the (chunk × N) distance block is one GEMM (norms folded in
    by augmenting the vectors). The ``k`` smallest entries are selected on a composite
    int64 key ``(float32 distance bits << 31) | reference index``, which orders by distance
    and then by index exactly and deterministically (non-negative IEEE floats order like
    their bit patterns). On CPU the keys are built, selected (numpy ``partition``) and
    sorted a few rows at a time per thread, so the working memory is the float32 block
    (4 bytes per entry) plus small per-thread scratch; on CUDA ``torch.topk`` runs on a full
    int64 key block (12 bytes per entry in all). Buffers are allocated once and reused by
    every chunk. float64 inputs stay float64 and use a full stable sort instead
    (O(N log N) per query: meant for small sets and reference checks).

    Args:
        memory_budget_bytes: working memory for one distance block (the chunk size is
            derived from it; at least one query row is processed at a time).
        device: where to compute (``"cpu"``, ``"cuda"``…); default: the queries' device.

    Example:
        >>> x = torch.tensor([[0.0], [1.0], [3.0], [10.0]])
        >>> result = TorchKNN().search(x, k=2)
        >>> result.indices
        tensor([[1, 2],
                [0, 2],
                [1, 0],
                [2, 1]])
        >>> result.distances
        tensor([[ 1.,  9.],
                [ 1.,  4.],
                [ 4.,  9.],
                [49., 81.]])
    """

    def __init__(
        self,
        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
        device: str | torch.device | None = None,
    ) -> None:
        if isinstance(memory_budget_bytes, bool) or not isinstance(memory_budget_bytes, int):
            raise TypeError(
                f"memory_budget_bytes must be an int; got {type(memory_budget_bytes).__name__}"
            )
        if memory_budget_bytes <= 0:
            raise ValueError(f"memory_budget_bytes must be > 0; got {memory_budget_bytes}")
        self.memory_budget_bytes = memory_budget_bytes
        self.device = None if device is None else torch.device(device)

    def __repr__(self) -> str:
        return f"TorchKNN(memory_budget_bytes={self.memory_budget_bytes}, device={self.device})"

    def chunk_rows(self, n_references: int, k: int) -> int:
        """Query rows per distance block such that the block, its keys (the CUDA path's
        upper bound: 12 bytes per entry, rounded up to 16) and the top-k fit the budget."""
        bytes_per_row = 16 * max(n_references, 1) + 16 * k
        return max(1, self.memory_budget_bytes // bytes_per_row)

    def search(
        self,
        queries: Tensor,
        k: int,
        references: Tensor | None = None,
        *,
        metric: str = "sqeuclidean",
        exclude: Tensor | None = None,
    ) -> KNNResult:
        """The ``k`` nearest references of each query (see :class:`KNNBackend`)."""
        chunks = [
            result
            for _, result in self.iter_search(
                queries, k, references, metric=metric, exclude=exclude
            )
        ]
        if not chunks:
            dtype = compute_dtype(queries, queries if references is None else references)
            device = self.device or queries.device
            return KNNResult(
                torch.empty(0, k, dtype=dtype, device=device),
                torch.empty(0, k, dtype=torch.long, device=device),
            )
        return KNNResult(
            torch.cat([c.distances for c in chunks]), torch.cat([c.indices for c in chunks])
        )

    def iter_search(
        self,
        queries: Tensor,
        k: int,
        references: Tensor | None = None,
        *,
        metric: str = "sqeuclidean",
        exclude: Tensor | None = None,
        rows: int | None = None,
    ) -> Iterator[tuple[int, KNNResult]]:
        """:meth:`search` one chunk of queries at a time: yields ``(first_row, result)``.

        The inputs are validated and the references prepared once, so a caller that
        reduces each chunk at once (like the retrieval metrics) never holds all (Q, k)
        neighbour lists. ``rows`` overrides the chunk size derived from the memory budget.
        """
        queries, references, exclude = resolve_search(queries, references, metric, exclude)
        if queries.shape[1] != references.shape[1]:
            raise ValueError(
                "queries and references must have the same dimension; "
                f"got {queries.shape[1]} and {references.shape[1]}"
            )
        exclude = _check_exclude(exclude, len(queries), len(references))
        _check_k(k, len(references) - (exclude is not None))
        rows = check_rows(rows, default=self.chunk_rows(len(references), k))
        return self._iter_chunks(queries, k, references, metric, exclude, rows)

    def _iter_chunks(
        self,
        queries: Tensor,
        k: int,
        references: Tensor,
        metric: str,
        exclude: Tensor | None,
        rows: int,
    ) -> Iterator[tuple[int, KNNResult]]:
        device = self.device or queries.device
        dtype = compute_dtype(queries, references)
        refs = _ReferenceSet(references.to(device=device, dtype=dtype), metric)
        rows = min(rows, max(len(queries), 1))
        # Buffers reused by every chunk: fresh multi-hundred-MB allocations would be
        # page-faulted in again each time.
        block_buffer = torch.empty(rows, len(references), dtype=dtype, device=device)
        use_keys = dtype == torch.float32 and len(references) <= 2**_INDEX_BITS
        key_buffer = torch.empty(0, dtype=torch.int64, device=device)
        if use_keys and device.type != "cpu":
            key_buffer = torch.empty(rows, len(references), dtype=torch.int64, device=device)
        for start in range(0, len(queries), rows):
            chunk = queries[start : start + rows].to(device=device, dtype=dtype)
            block = refs.distances_to(chunk, out=block_buffer[: len(chunk)])
            if exclude is not None:
                ex = exclude[start : start + rows].to(device)
                has = ex >= 0
                block[has.nonzero().squeeze(1), ex[has]] = float("inf")
            if use_keys:
                dist, idx = _smallest_k_by_keys(block, k, key_buffer[: len(chunk)])
            else:
                dist, idx = _smallest_k_by_sort(block, k)
            yield start, KNNResult(refs.finish(dist), idx)


def iter_knn(
    knn: KNNBackend,
    queries: Tensor,
    k: int,
    references: Tensor | None = None,
    *,
    metric: str = "sqeuclidean",
    exclude: Tensor | None = None,
    rows: int,
) -> Iterator[tuple[int, KNNResult]]:
    """Chunked search with any backend: its ``iter_search`` when it has one, else ``search``
    on slices of ``rows`` queries. Yields ``(first_row, KNNResult)``."""
    if hasattr(knn, "iter_search"):
        yield from knn.iter_search(
            queries, k, references, metric=metric, exclude=exclude, rows=rows
        )
        return
    if references is None:
        references = queries
        if exclude is None:
            exclude = torch.arange(len(queries), device=queries.device)
    for start in range(0, len(queries), rows):
        ex = None if exclude is None else exclude[start : start + rows]
        yield (
            start,
            knn.search(queries[start : start + rows], k, references, metric=metric, exclude=ex),
        )


class _ReferenceSet:
    """References prepared once for many query chunks.

    For the euclidean metrics the references are centred on their mean (this avoids
    cancellation for large offsets and is the same for every chunk, so results do not
    depend on the chunk size) and augmented so that ONE GEMM gives the whole distance:
    [q, ‖q‖², 1] · [−2r, 1, ‖r‖²]ᵀ = ‖q‖² + ‖r‖² − 2⟨q, r⟩ — no extra passes over the block.
    """

    def __init__(self, references: Tensor, metric: str) -> None:
        self.metric = metric
        if metric == "cosine":
            self.center = None
            points = torch.nn.functional.normalize(references, dim=1, eps=_COSINE_EPS)
            # 1 − ⟨q̂, r̂⟩ = [q̂, 1] · [−r̂, 1]ᵀ
            ones = torch.ones(len(points), 1, dtype=points.dtype, device=points.device)
            self.augmented = torch.cat([-points, ones], dim=1)
        else:
            self.center = references.mean(dim=0, keepdim=True)
            points = references - self.center
            sq_norms = (points * points).sum(dim=1, keepdim=True)
            ones = torch.ones_like(sq_norms)
            self.augmented = torch.cat([-2 * points, ones, sq_norms], dim=1)

    def distances_to(self, queries: Tensor, out: Tensor) -> Tensor:
        """(Q, N) distances used for ranking (squared euclidean for both euclidean metrics),
        written into ``out``; may hold tiny negative values from rounding (clamped later)."""
        ones = torch.ones(len(queries), 1, dtype=queries.dtype, device=queries.device)
        if self.metric == "cosine":
            q = torch.nn.functional.normalize(queries, dim=1, eps=_COSINE_EPS)
            q = torch.cat([q, ones], dim=1)
        else:
            q = queries - self.center
            q = torch.cat([q, (q * q).sum(dim=1, keepdim=True), ones], dim=1)
        return torch.mm(q, self.augmented.T, out=out)

    def finish(self, distances: Tensor) -> Tensor:
        return distances.sqrt() if self.metric == "euclidean" else distances


def _smallest_k_by_keys(block: Tensor, k: int, keys: Tensor) -> tuple[Tensor, Tensor]:
    """Row-wise k smallest of a float32 block, ordered by (value, column index), exactly.

    The key of entry j is (bits of max(value, +0.0)) << 31 | j: non-negative IEEE floats
    order like their bit patterns, and negative values (rounding noise, −0.0) have negative
    int32 patterns, so clamping the integers at 0 is the same as clamping the distances at
    +0.0. ``keys`` is a reusable int64 scratch buffer (CUDA: (rows, N); CPU: unused).
    """
    top = (
        _smallest_k_numpy(block, k)
        if block.device.type == "cpu"
        else _smallest_k_torch(block, k, keys)
    )
    idx = top.bitwise_and((1 << _INDEX_BITS) - 1)
    distances = top.bitwise_right_shift_(_INDEX_BITS).to(torch.int32).view(torch.float32)
    return distances, idx


def _smallest_k_torch(block: Tensor, k: int, keys: Tensor) -> Tensor:
    """Sorted k smallest int64 keys per row with ``torch.topk`` (any device; used on CUDA)."""
    columns = torch.arange(block.shape[1], device=block.device)
    keys.copy_(block.view(torch.int32))
    keys.clamp_min_(0).bitwise_left_shift_(_INDEX_BITS).bitwise_or_(columns)
    return torch.topk(keys, k, dim=1, largest=False, sorted=True).values


def selection_threads() -> int:
    """Python threads for the CPU selection: ``torch.get_num_threads()`` when OpenMP worker
    threads sleep between parallel regions (``OMP_WAIT_POLICY=passive``), else 1.

    By default torch's OpenMP workers spin for a while after every parallel op (the GEMM),
    and on a small machine they then compete with numpy threads for the cores: measured
    here (2 cores, 7,000 × 70,000 block, k = 6,999), two selection threads took 12.4 s and
    one 7.8 s; with ``OMP_WAIT_POLICY=passive`` 6.1 s and 5.6 s.
    """
    if os.environ.get("OMP_WAIT_POLICY", "").strip().lower() == "passive":
        return torch.get_num_threads()
    return 1


_ROWS_PER_STEP = 8  # keys of 8 rows stay in cache between building, selecting and sorting


def _smallest_k_numpy(block: Tensor, k: int) -> Tensor:
    """Sorted k smallest int64 keys per row of a float32 CPU block.

    Keys are built a few rows at a time (so they stay in cache), then numpy's in-place
    ``partition`` (introselect) and ``sort`` run on plain int64 rows — about 3× faster
    than ``torch.topk``, which selects (value, index) pairs although the key already holds
    the index. numpy releases the GIL, so row groups can run on several threads
    (:func:`selection_threads`).
    """
    bits = block.view(torch.int32).numpy()
    n_rows, n = bits.shape
    columns = np.arange(n, dtype=np.int64)
    n_threads = max(1, min(selection_threads(), n_rows))
    bounds = np.linspace(0, n_rows, n_threads + 1).astype(int)
    out = np.empty((n_rows, k), dtype=np.int64)

    def select(part: int) -> None:
        scratch = np.empty((_ROWS_PER_STEP, n), dtype=np.int64)
        for start in range(bounds[part], bounds[part + 1], _ROWS_PER_STEP):
            stop = min(start + _ROWS_PER_STEP, bounds[part + 1])
            keys = scratch[: stop - start]
            np.maximum(bits[start:stop], 0, out=keys)  # int32 → int64, negatives → +0.0
            np.left_shift(keys, _INDEX_BITS, out=keys)
            np.bitwise_or(keys, columns, out=keys)
            keys.partition(k - 1, axis=1)
            out[start:stop] = np.sort(keys[:, :k], axis=1)

    if n_threads == 1:
        select(0)
    else:
        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(select, range(n_threads)))
    return torch.from_numpy(out)


def _smallest_k_by_sort(block: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Row-wise k smallest by a stable sort (float64, or more than 2³¹ references)."""
    values, idx = torch.sort(block.clamp_min_(0), dim=1, stable=True)
    return values[:, :k].contiguous(), idx[:, :k].contiguous()


def resolve_search(
    queries: Tensor, references: Tensor | None, metric: str, exclude: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Validate a search's inputs, shared by every backend.

    ``references=None`` searches the queries themselves, each query excluded from its own
    neighbours unless ``exclude`` says otherwise. Returns ``(queries, references, exclude)``.
    """
    check_choice(metric, "metric", METRICS)
    queries = check_embeddings(queries, "queries")
    if references is None:
        if exclude is None:
            exclude = torch.arange(len(queries), device=queries.device)
        return queries, queries, exclude
    return queries, check_embeddings(references, "references"), exclude


def check_rows(rows: int | None, default: int) -> int:
    """The chunk size of an ``iter_search``: ``default`` when None, else a positive int."""
    if rows is None:
        return default
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ValueError(f"rows must be a positive int; got {rows!r}")
    return rows


def _check_exclude(exclude: Tensor | None, n_queries: int, n_references: int) -> Tensor | None:
    if exclude is None:
        return None
    if not isinstance(exclude, Tensor) or exclude.is_floating_point():
        raise TypeError("exclude must be an integer tensor of reference indices (-1 for none)")
    if exclude.shape != (n_queries,):
        raise ValueError(f"exclude must have shape ({n_queries},); got {tuple(exclude.shape)}")
    if n_queries and (int(exclude.max()) >= n_references or int(exclude.min()) < -1):
        raise ValueError(f"exclude values must lie in [-1, {n_references - 1}]")
    return exclude.long()


def _check_k(k: object, available: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int; got {type(k).__name__}")
    if k < 1 or k > available:
        raise ValueError(
            f"k must be between 1 and the number of eligible references ({available}); got {k}"
        )
    return k
