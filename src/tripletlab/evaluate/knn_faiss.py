"""k-nearest-neighbour search with faiss: exact flat, IVF and HNSW indexes.

:class:`FaissKNN` implements the :class:`~tripletlab.evaluate.knn.KNNBackend` protocol of the
torch backend, so evaluation and offline mining take either. Three index types:

* ``"flat"`` — exact brute force (``IndexFlatL2`` / ``IndexFlatIP``). Results equal
  :class:`~tripletlab.evaluate.knn.TorchKNN`'s: faiss proposes a few more candidates than
  asked, their distances are recomputed exactly in torch (same centring as the torch backend)
  and sorted by (distance, index), so tie order and chunking never change the answer.
* ``"ivf"`` — inverted file (``IndexIVFFlat``): k-means into ``nlist`` cells, ``nprobe`` cells
  searched per query. Approximate; much faster on large sets.
* ``"hnsw"`` — hierarchical navigable small-world graph (``IndexHNSWFlat``). Approximate; no
  training, fast queries, slower to build.

An index is built (trained, filled) once per reference set: :class:`FaissKNN` keeps the last
one and reuses it while the same references are searched again — the chunks of an
evaluation, its exact-vs-approximate gap, a recall check. Another tensor, or the same one
changed in place, gets a new index (:mod:`~tripletlab.evaluate.faiss_index`).

For the approximate indexes, :meth:`FaissKNN.recall` measures recall@k against exact search on
a sample of queries; the ``min_recall`` option runs that check on every search and warns when
it fails.

faiss is an optional dependency: ``pip install tripletlab[faiss]`` (``faiss-cpu``). It is
imported only when a :class:`FaissKNN` is created.

References:
    Johnson, Douze, Jégou, "Billion-scale similarity search with GPUs", IEEE Trans. Big Data
    2019 (faiss). Malkov & Yashunin, "Efficient and robust approximate nearest neighbor search
    using Hierarchical Navigable Small World graphs", TPAMI 2018.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tripletlab.errors import TripletlabError
from tripletlab.evaluate.faiss_index import FaissIndex
from tripletlab.evaluate.knn import KNNResult, TorchKNN, _check_k, check_rows, resolve_search
from tripletlab.functional.distances import METRICS
from tripletlab.validation import check_choice, check_embeddings

INDEX_TYPES: tuple[str, ...] = ("flat", "ivf", "hnsw")


class MissingDependencyError(TripletlabError, ImportError):
    """An optional dependency is not installed."""


def import_faiss() -> Any:
    """Import faiss, or raise a MissingDependencyError that says how to install it."""
    try:
        import faiss
    except ImportError as exc:
        raise MissingDependencyError(
            "the faiss kNN backend needs faiss; install it with `pip install tripletlab[faiss]` "
            "(or `pip install faiss-cpu`)"
        ) from exc
    return faiss


class FaissKNN:
    """kNN backend on faiss (CPU): flat exact, IVF or HNSW.

    Args:
        index_type: ``"flat"`` (exact; equals :class:`TorchKNN`), ``"ivf"`` or ``"hnsw"``.
        nlist: IVF cells; default ``4·√N`` (at least 1, at most N/39 so each cell trains on
            39 points, faiss's minimum).
        nprobe: IVF cells searched per query (default 16). More: slower, higher recall.
        hnsw_m: HNSW neighbours per node (default 32).
        ef_construction: HNSW build-time beam width (default 40).
        ef_search: HNSW query-time beam width (default ``max(64, 2k)``).
        train_size: IVF trains k-means on at most this many references (default 256·nlist).
        threads: faiss OpenMP threads (default: faiss's own choice).
        query_chunk: queries per faiss call (bounds the re-ranking memory).
        min_recall: when set (approximate indexes), every search also measures recall@k on
            ``recall_sample`` queries against exact search and warns when below.
        recall_sample: queries used by that check (default 1000).
        seed: seed of the IVF training sample and of the recall sample.

    Example:
        >>> x = torch.tensor([[0.0], [1.0], [3.0], [10.0]])
        >>> FaissKNN("flat").search(x, k=2).indices
        tensor([[1, 2],
                [0, 2],
                [1, 0],
                [2, 1]])
    """

    def __init__(
        self,
        index_type: str = "flat",
        *,
        nlist: int | None = None,
        nprobe: int = 16,
        hnsw_m: int = 32,
        ef_construction: int = 40,
        ef_search: int | None = None,
        train_size: int | None = None,
        threads: int | None = None,
        query_chunk: int = 4096,
        min_recall: float | None = None,
        recall_sample: int = 1000,
        seed: int = 0,
    ) -> None:
        check_choice(index_type, "index_type", INDEX_TYPES)
        for name, value in (
            ("nprobe", nprobe),
            ("hnsw_m", hnsw_m),
            ("ef_construction", ef_construction),
            ("query_chunk", query_chunk),
            ("recall_sample", recall_sample),
            ("nlist", nlist),
            ("ef_search", ef_search),
            ("train_size", train_size),
            ("threads", threads),
        ):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        if min_recall is not None and not 0 <= min_recall <= 1:
            raise ValueError(f"min_recall must lie in [0, 1]; got {min_recall!r}")
        self.faiss = import_faiss()
        self.index_type = index_type
        self.nlist = nlist
        self.nprobe = nprobe
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.train_size = train_size
        self.threads = threads
        self.query_chunk = query_chunk
        self.min_recall = min_recall
        self.recall_sample = recall_sample
        self.seed = seed
        self._last: FaissIndex | None = None  # reused while the same references are searched
        if threads is not None:
            self.faiss.omp_set_num_threads(threads)

    def __repr__(self) -> str:
        return (
            f"FaissKNN(index_type={self.index_type!r}, nlist={self.nlist}, nprobe={self.nprobe}, "
            f"hnsw_m={self.hnsw_m}, ef_construction={self.ef_construction}, "
            f"ef_search={self.ef_search})"
        )

    @property
    def exact(self) -> bool:
        """True for the flat index."""
        return self.index_type == "flat"

    def _nlist_for(self, n: int) -> int:
        if self.nlist is not None:
            return min(self.nlist, n)
        return max(1, min(int(4 * math.sqrt(n)), n // 39))

    def _make_index(self, dim: int, metric: str, n: int) -> tuple[Any, Any]:
        faiss = self.faiss
        ip = metric == "cosine"
        faiss_metric = faiss.METRIC_INNER_PRODUCT if ip else faiss.METRIC_L2
        if self.index_type == "flat":
            return (faiss.IndexFlatIP(dim) if ip else faiss.IndexFlatL2(dim)), None
        if self.index_type == "ivf":
            nlist = self._nlist_for(n)
            quantizer = faiss.IndexFlatIP(dim) if ip else faiss.IndexFlatL2(dim)
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss_metric)
            index.nprobe = min(self.nprobe, nlist)
            return index, quantizer  # the index does not own its quantizer: keep it alive
        index = faiss.IndexHNSWFlat(dim, self.hnsw_m, faiss_metric)
        index.hnsw.efConstruction = self.ef_construction
        return index, None

    def _training_sample(self, data: np.ndarray) -> np.ndarray:
        nlist = self._nlist_for(len(data))
        size = self.train_size or 256 * nlist
        if size >= len(data):
            return data
        rng = np.random.default_rng(self.seed)
        return data[np.sort(rng.choice(len(data), size, replace=False))]

    def build(self, references: Tensor, metric: str = "sqeuclidean") -> FaissIndex:
        """Index ``references`` (N, D) once for many searches (copied to CPU float32).

        Example:
            >>> index = FaissKNN("flat").build(torch.eye(3))
            >>> index.search(torch.tensor([[1.0, 0.1, 0.0]]), k=1).indices
            tensor([[0]])
        """
        check_choice(metric, "metric", METRICS)
        references = check_embeddings(references, "references")
        if len(references) == 0:
            raise ValueError("references must contain at least one row")
        if self._last is not None and self._last.indexes(references, metric):
            return self._last
        self._last = None  # the old index is freed before the new one is built
        self._last = FaissIndex(self, references, metric)
        return self._last

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
        queries, references, exclude = resolve_search(queries, references, metric, exclude)
        result = self.build(references, metric).search(queries, k, exclude=exclude)
        if self.min_recall is not None and not self.exact:
            recall = self._recall_of(result, queries, k, references, metric, exclude)
            if recall < self.min_recall:
                warnings.warn(
                    f"faiss {self.index_type} recall@{k} = {recall:.3f} is below min_recall "
                    f"= {self.min_recall}; raise nprobe/ef_search or use index_type='flat'",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return result

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
        """:meth:`search` one chunk of ``rows`` queries at a time, the index built once:
        yields ``(first_row, result)`` (the interface :func:`~tripletlab.evaluate.knn.iter_knn`
        uses, so retrieval metrics never hold all neighbour lists)."""
        queries, references, exclude = resolve_search(queries, references, metric, exclude)
        rows = check_rows(rows, default=self.query_chunk)
        index = self.build(references, metric)
        _check_k(k, index.n - (exclude is not None))

        def chunks() -> Iterator[tuple[int, KNNResult]]:
            for start in range(0, len(queries), rows):
                ex = None if exclude is None else exclude[start : start + rows]
                yield start, index.search(queries[start : start + rows], k, exclude=ex)

        return chunks()

    def recall(
        self,
        queries: Tensor,
        k: int,
        references: Tensor | None = None,
        *,
        metric: str = "sqeuclidean",
        exclude: Tensor | None = None,
    ) -> float:
        """recall@k of this backend against exact search, on ``recall_sample`` queries.

        The fraction of the exact k nearest neighbours (TorchKNN) that this index returns.
        """
        queries, references, exclude = resolve_search(queries, references, metric, exclude)
        sample = self._sample(len(queries))
        sub_ex = None if exclude is None else exclude[sample]
        result = self.build(references, metric).search(queries[sample], k, exclude=sub_ex)
        return self._recall_of(result, queries[sample], k, references, metric, sub_ex, sampled=True)

    def _sample(self, n: int) -> Tensor:
        if n <= self.recall_sample:
            return torch.arange(n)
        gen = torch.Generator().manual_seed(self.seed)
        return torch.randperm(n, generator=gen)[: self.recall_sample].sort().values

    def _recall_of(
        self,
        result: KNNResult,
        queries: Tensor,
        k: int,
        references: Tensor,
        metric: str,
        exclude: Tensor | None,
        sampled: bool = False,
    ) -> float:
        sample = torch.arange(len(queries)) if sampled else self._sample(len(queries))
        ex = None if exclude is None else exclude[sample]
        exact = TorchKNN().search(queries[sample], k, references, metric=metric, exclude=ex)
        return recall_at_k(KNNResult(result.distances[sample], result.indices[sample]), exact)


def recall_at_k(approximate: KNNResult, exact: KNNResult) -> float:
    """Fraction of the exact neighbours (per row, as sets) that ``approximate`` also returns.

    Example:
        >>> exact = KNNResult(torch.zeros(1, 2), torch.tensor([[3, 5]]))
        >>> recall_at_k(KNNResult(torch.zeros(1, 2), torch.tensor([[5, 7]])), exact)
        0.5
    """
    a, e = approximate.indices.cpu(), exact.indices.cpu()
    if e.numel() == 0:
        return 1.0
    hits = (e[:, :, None] == a[:, None, :]).any(dim=2) & (e >= 0)
    return float(hits.sum()) / float((e >= 0).sum().clamp_min(1))
