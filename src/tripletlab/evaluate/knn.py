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

from collections.abc import Callable, Iterator
from typing import NamedTuple, Protocol, TypeVar, runtime_checkable

import torch
from torch import Tensor

from tripletlab.evaluate.chunked import ChunkPlan, MaskFn, ReferenceSet, map_chunks
from tripletlab.functional.distances import METRICS
from tripletlab.validation import check_choice, check_embeddings, compute_dtype

DEFAULT_MEMORY_BUDGET = 512 * 2**20  # bytes of working memory for the distance blocks
_CHUNKS_PER_WORKER = 4  # at least this many chunks per CPU worker: balanced to the end
T = TypeVar("T")


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
    by augmenting the vectors) and the ``k`` smallest entries of each row are selected on a
    composite int64 key ``(float32 distance bits << 31) | reference index`` — by distance,
    then by index, exactly and deterministically — without sorting whole rows
    (:mod:`tripletlab.evaluate.selection`). On CPU, ``threads`` worker threads each run
    whole chunks with one torch thread, so no OpenMP thread ever spin-waits against the
    selection and no environment variable is needed for speed
    (:mod:`tripletlab.evaluate.chunked`). float64 inputs stay float64 and use a full
    stable sort instead (meant for small sets and reference checks).

    Args:
        memory_budget_bytes: working memory of the distance blocks in flight (CPU: one per
            worker thread). Each row is charged 16 bytes per reference (the float32 block,
            and on CUDA the int64 keys) plus 16 per kept neighbour; at least one query row
            is processed at a time.
        device: where to compute (``"cpu"``, ``"cuda"``…); default: the queries' device.
        threads: CPU worker threads; default ``torch.get_num_threads()``.

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
        threads: int | None = None,
    ) -> None:
        if isinstance(memory_budget_bytes, bool) or not isinstance(memory_budget_bytes, int):
            raise TypeError(
                f"memory_budget_bytes must be an int; got {type(memory_budget_bytes).__name__}"
            )
        if memory_budget_bytes <= 0:
            raise ValueError(f"memory_budget_bytes must be > 0; got {memory_budget_bytes}")
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise ValueError(f"threads must be a positive int or None; got {threads!r}")
        self.memory_budget_bytes = memory_budget_bytes
        self.device = None if device is None else torch.device(device)
        self.threads = threads

    def __repr__(self) -> str:
        return (
            f"TorchKNN(memory_budget_bytes={self.memory_budget_bytes}, device={self.device}, "
            f"threads={self.threads})"
        )

    def worker_threads(self, device: torch.device | None = None) -> int:
        """Chunks computed at once: ``threads`` (default torch's) on CPU, 1 elsewhere."""
        device = self.device or device or torch.device("cpu")
        if device.type != "cpu":
            return 1
        return self.threads or torch.get_num_threads()

    def chunk_rows(self, n_references: int, k: int, device: torch.device | None = None) -> int:
        """Query rows per chunk such that the blocks of all workers, their keys (the CUDA
        path's upper bound: 12 bytes per entry, rounded up to 16) and the top-k fit the
        budget."""
        bytes_per_row = 16 * max(n_references, 1) + 16 * k
        per_worker = self.memory_budget_bytes // self.worker_threads(device)
        return max(1, per_worker // bytes_per_row)

    def search(
        self,
        queries: Tensor,
        k: int,
        references: Tensor | None = None,
        *,
        metric: str = "sqeuclidean",
        exclude: Tensor | None = None,
        mask_fn: MaskFn | None = None,
    ) -> KNNResult:
        """The ``k`` nearest references of each query (see :class:`KNNBackend`);
        ``mask_fn`` as in :meth:`map_chunks`."""
        chunks = [
            result
            for _, result in self.iter_search(
                queries, k, references, metric=metric, exclude=exclude, mask_fn=mask_fn
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
        mask_fn: MaskFn | None = None,
        rows: int | None = None,
    ) -> Iterator[tuple[int, KNNResult]]:
        """:meth:`search` one chunk of queries at a time: yields ``(first_row, result)``.

        The inputs are validated and the references prepared once, so a caller that
        reduces each chunk at once never holds all (Q, k) neighbour lists. ``rows``
        overrides the chunk size derived from the memory budget.
        """
        return self.map_chunks(
            queries,
            k,
            references,
            fn=_as_result,
            metric=metric,
            exclude=exclude,
            mask_fn=mask_fn,
            rows=rows,
        )

    def map_chunks(
        self,
        queries: Tensor,
        k: int,
        references: Tensor | None = None,
        *,
        fn: Callable[[int, KNNResult], T],
        metric: str = "sqeuclidean",
        exclude: Tensor | None = None,
        mask_fn: MaskFn | None = None,
        rows: int | None = None,
    ) -> Iterator[tuple[int, T]]:
        """Yield ``(first_row, fn(first_row, result))`` per chunk, in order, with ``fn``
        run on the worker thread that searched the chunk (so per-chunk reductions run in
        parallel and overlap the next GEMMs).

        Args:
            queries, k, references, metric, exclude: as in :meth:`search`.
            fn: reduces one chunk's :class:`KNNResult`; runs in a worker thread with one
                torch thread, must be a pure function of its arguments.
            mask_fn: ``mask_fn(start, stop)`` → (stop − start, N) bool tensor, True where
                query ``start + i`` must not see a reference, or None: a per-query
                exclusion set (e.g. a re-id protocol's same-camera gallery entries).
                Masked references get distance ``+inf``; they rank after every eligible
                one, so rows of queries with fewer than k eligible references end with
                masked entries at distance ``inf``. Also runs in worker threads.
            rows: chunk size (default from the memory budget).
        """
        queries, references, exclude = resolve_search(queries, references, metric, exclude)
        if queries.shape[1] != references.shape[1]:
            raise ValueError(
                "queries and references must have the same dimension; "
                f"got {queries.shape[1]} and {references.shape[1]}"
            )
        exclude = _check_exclude(exclude, len(queries), len(references))
        _check_k(k, len(references) - (exclude is not None))
        device = self.device or queries.device
        threads = self.worker_threads(device)
        default_rows = self.chunk_rows(len(references), k, device)
        # enough chunks for every worker to stay busy until the end
        balanced = -(-len(queries) // (_CHUNKS_PER_WORKER * threads))
        rows = check_rows(rows, default=max(1, min(default_rows, balanced)))
        dtype = compute_dtype(queries, references)
        plan = ChunkPlan(
            queries=queries,
            refs=ReferenceSet(references.to(device=device, dtype=dtype), metric),
            k=k,
            rows=min(rows, max(len(queries), 1)),
            device=device,
            dtype=dtype,
            exclude=exclude,
            mask_fn=mask_fn,
        )
        return map_chunks(plan, lambda start, dist, idx: fn(start, KNNResult(dist, idx)), threads)


def _as_result(start: int, result: KNNResult) -> KNNResult:
    return result


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
