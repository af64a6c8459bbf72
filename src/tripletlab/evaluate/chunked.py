"""The chunked exact kNN engine: distance blocks by GEMM, top-k by partial selection.

Queries are cut into chunks of ``rows``; for each chunk one GEMM gives the (rows × N)
distance block to every reference, excluded references are set to ``+inf``, and the k
smallest entries of each row are selected (:mod:`tripletlab.evaluate.selection`) and
turned into a :class:`~tripletlab.evaluate.knn.KNNResult`. A per-chunk function ``fn``
(e.g. the retrieval metrics' per-query scores) runs right after, on the same thread, so a
caller that reduces each chunk never holds all (Q, k) neighbour lists.

Threads (CPU). Running torch's OpenMP GEMM and numpy's selection one after the other on
the same cores is slow by default: after every parallel region, libgomp's worker threads
spin-wait (``OMP_WAIT_POLICY`` unset: GOMP_SPINCOUNT = 300,000 iterations) and steal the
cores the single-threaded selection and bookkeeping that follow need — the more, the
shorter the regions. Measured on 2 cores (70k × 128, R = 7,000): 80 s by default, 48.5 s
with ``OMP_WAIT_POLICY=passive``. So here no OpenMP parallel region is opened at all:
``threads`` Python worker threads (default ``torch.get_num_threads()``) each run whole
chunks — GEMM, exclusion, selection and ``fn`` — with torch set to one intra-op thread in
that worker. GEMMs (MKL) and numpy selections release the GIL, so the workers use every
core, one worker's GEMM overlaps another's selection, and nothing spins. Results are
yielded in chunk order whatever order the workers finish in, so they never depend on the
thread count. On CUDA, chunks run one after the other in the calling thread.

Exclusions. ``exclude`` (one reference index per query, −1 for none) and ``mask_fn``
(a callable ``mask_fn(start, stop)`` returning a (stop − start, N) bool tensor, True where
that query must not see that reference, or None) set entries to ``+inf``: excluded
references rank after every eligible one, so when k exceeds a query's eligible count the
tail of its row holds excluded references with distance ``inf``. ``mask_fn`` and ``fn``
run in worker threads and must not depend on call order (pure functions of their
arguments).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tripletlab.evaluate.selection import (
    INDEX_BITS,
    smallest_k_by_sort,
    smallest_k_keys_cpu,
    smallest_k_keys_torch,
    split_keys,
    threshold_sample,
)

MaskFn = Callable[[int, int], "Tensor | None"]
ChunkFn = Callable[[int, Tensor, Tensor], Any]
_COSINE_EPS = 1e-12
_CHUNKS_AHEAD_PER_THREAD = 2  # queued chunks per worker: no worker waits for the consumer


class ReferenceSet:
    """References prepared once for many query chunks.

    For the euclidean metrics the references are centred on their mean (this avoids
    cancellation for large offsets and is the same for every chunk, so results do not
    depend on the chunk size) and augmented so that ONE GEMM gives the whole distance:
    [q, ‖q‖², 1] · [−2r, 1, ‖r‖²]ᵀ = ‖q‖² + ‖r‖² − 2⟨q, r⟩ — no extra passes over the block.
    Cosine: 1 − ⟨q̂, r̂⟩ = [q̂, 1] · [−r̂, 1]ᵀ.

    Example:
        >>> refs = ReferenceSet(torch.tensor([[0.0], [2.0]]), "sqeuclidean")
        >>> refs.distances_to(torch.tensor([[1.0], [3.0]]), out=torch.empty(2, 2))
        tensor([[1., 1.],
                [9., 1.]])
    """

    def __init__(self, references: Tensor, metric: str) -> None:
        self.metric = metric
        self.n = len(references)
        if metric == "cosine":
            self.center = None
            points = torch.nn.functional.normalize(references, dim=1, eps=_COSINE_EPS)
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
        written into ``out``; may hold tiny negative values from rounding."""
        ones = torch.ones(len(queries), 1, dtype=queries.dtype, device=queries.device)
        if self.center is None:  # cosine
            q = torch.nn.functional.normalize(queries, dim=1, eps=_COSINE_EPS)
            q = torch.cat([q, ones], dim=1)
        else:
            q = queries - self.center
            q = torch.cat([q, (q * q).sum(dim=1, keepdim=True), ones], dim=1)
        return torch.mm(q, self.augmented.T, out=out)

    def finish(self, distances: Tensor) -> Tensor:
        """Ranking distances → the metric's distances (square root for ``euclidean``)."""
        return distances.sqrt() if self.metric == "euclidean" else distances


@dataclass
class ChunkPlan:
    """Everything one chunk search needs (shared read-only by the worker threads).

    ``queries`` (Q, D) on any device; ``refs`` prepared on the compute device and dtype;
    ``exclude`` (Q,) int64 or None; ``mask_fn`` see the module docstring.
    """

    queries: Tensor
    refs: ReferenceSet
    k: int
    rows: int
    device: torch.device
    dtype: torch.dtype
    exclude: Tensor | None = None
    mask_fn: MaskFn | None = None

    @property
    def use_keys(self) -> bool:
        """float32 blocks are selected on int64 keys; float64 ones by a stable sort."""
        return self.dtype == torch.float32 and self.refs.n <= 2**INDEX_BITS


class _Scratch:
    """One worker's reusable buffers: fresh multi-hundred-MB allocations would be
    page-faulted in again for every chunk."""

    def __init__(self, plan: ChunkPlan) -> None:
        shape = (plan.rows, plan.refs.n)
        self.block = torch.empty(shape, dtype=plan.dtype, device=plan.device)
        on_cpu = plan.device.type == "cpu"
        self.keys = torch.empty(0 if on_cpu else shape, dtype=torch.int64, device=plan.device)
        self.top = np.empty((plan.rows, plan.k), dtype=np.int64) if on_cpu else None
        self.sample = threshold_sample(plan.refs.n, plan.k) if on_cpu else None


def search_chunk(plan: ChunkPlan, start: int, scratch: _Scratch) -> tuple[Tensor, Tensor]:
    """(distances, indices), each (C, k), of the queries ``start : start + rows``."""
    chunk = plan.queries[start : start + plan.rows].to(device=plan.device, dtype=plan.dtype)
    stop = start + len(chunk)
    block = plan.refs.distances_to(chunk, out=scratch.block[: len(chunk)])
    if plan.exclude is not None:
        ex = plan.exclude[start:stop].to(plan.device)
        has = ex >= 0
        block[has.nonzero().squeeze(1), ex[has]] = float("inf")
    if plan.mask_fn is not None:
        mask = plan.mask_fn(start, stop)
        if mask is not None:
            block.masked_fill_(
                _check_mask(mask, (len(chunk), plan.refs.n)).to(plan.device), float("inf")
            )
    if not plan.use_keys:
        dist, idx = smallest_k_by_sort(block, plan.k)
    elif scratch.top is not None:  # CPU
        top = smallest_k_keys_cpu(block, plan.k, scratch.sample, scratch.top)
        dist, idx = split_keys(torch.from_numpy(top.copy()))
    else:
        dist, idx = split_keys(smallest_k_keys_torch(block, plan.k, scratch.keys[: len(chunk)]))
    return plan.refs.finish(dist), idx


def map_chunks(plan: ChunkPlan, fn: ChunkFn, threads: int) -> Iterator[tuple[int, Any]]:
    """Yield ``(start, fn(start, distances, indices))`` for every chunk, in chunk order.

    CPU: ``threads`` worker threads, each with one torch intra-op thread (see the module
    docstring); the caller's torch thread count is restored when the iteration ends.
    Other devices: one chunk after the other in this thread.
    """
    starts = range(0, len(plan.queries), plan.rows)
    if plan.device.type != "cpu":
        yield from _map_serial(plan, fn, starts, torch_threads=None)
        return
    if threads <= 1 or len(starts) <= 1:
        yield from _map_serial(plan, fn, starts, torch_threads=1 if threads <= 1 else threads)
        return
    local = threading.local()

    def task(start: int) -> tuple[int, Any]:
        if not hasattr(local, "scratch"):
            local.scratch = _Scratch(plan)
        return start, fn(start, *search_chunk(plan, start, local.scratch))

    caller_threads = torch.get_num_threads()
    pool = ThreadPoolExecutor(threads, initializer=torch.set_num_threads, initargs=(1,))
    pending: deque[Future[tuple[int, Any]]] = deque()
    upcoming = iter(starts)
    try:
        for start in upcoming:
            pending.append(pool.submit(task, start))
            if len(pending) >= threads * _CHUNKS_AHEAD_PER_THREAD:
                break
        while pending:
            done = pending.popleft().result()
            for start in upcoming:
                pending.append(pool.submit(task, start))
                break
            yield done
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)
        # a worker's set_num_threads(1) also changes torch's default for new threads
        torch.set_num_threads(caller_threads)


def _map_serial(
    plan: ChunkPlan, fn: ChunkFn, starts: range, torch_threads: int | None
) -> Iterator[tuple[int, Any]]:
    """One chunk after the other in the calling thread, with ``torch_threads`` intra-op
    threads while a chunk is computed (None: leave torch's setting alone)."""
    scratch = _Scratch(plan)
    caller_threads = torch.get_num_threads()
    try:
        for start in starts:
            if torch_threads is not None:
                torch.set_num_threads(torch_threads)
            value = fn(start, *search_chunk(plan, start, scratch))
            torch.set_num_threads(caller_threads)
            yield start, value
    finally:
        torch.set_num_threads(caller_threads)


def _check_mask(mask: Tensor, shape: tuple[int, int]) -> Tensor:
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != shape:
        raise ValueError(
            f"mask_fn must return a bool tensor of shape {shape} (or None); got "
            f"{getattr(mask, 'dtype', type(mask).__name__)} {tuple(getattr(mask, 'shape', ()))}"
        )
    return mask
