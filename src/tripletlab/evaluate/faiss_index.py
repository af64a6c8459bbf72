"""A faiss index built once over a reference set and searched many times (see
:class:`~tripletlab.evaluate.knn_faiss.FaissKNN`, which builds it and keeps the last one for
as long as the same references are searched again).

Candidates come from faiss; the flat (exact) index re-ranks ``k + 8`` of them with exact
torch distances, so its results equal :class:`~tripletlab.evaluate.knn.TorchKNN`'s. The
approximate indexes (IVF-Flat, HNSW-Flat) store the vectors, so the distances faiss returns
are exact up to float32 rounding: they are only ordered by (distance, index) with one sort of
composite int64 keys, without gathering the candidate vectors again.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from tripletlab.evaluate.knn import KNNResult, _check_exclude, _check_k
from tripletlab.evaluate.selection import INDEX_BITS, split_keys
from tripletlab.validation import check_embeddings

_COSINE_EPS = 1e-12
_EXTRA_CANDIDATES = 8  # flat: faiss proposes k + 8, torch re-ranks exactly


class IndexSettings(Protocol):
    """What an index takes from the :class:`~tripletlab.evaluate.knn_faiss.FaissKNN` that
    builds it (a protocol: the two modules do not import each other)."""

    index_type: str
    ef_search: int | None
    query_chunk: int

    @property
    def exact(self) -> bool: ...

    def _make_index(self, dim: int, metric: str, n: int) -> tuple[Any, Any]: ...

    def _training_sample(self, data: np.ndarray) -> np.ndarray: ...


class FaissIndex:
    """A faiss index built once over a reference set, searched many times.

    Made by :meth:`FaissKNN.build`; see there. ``search(queries, k, exclude=None)``.
    """

    def __init__(self, owner: IndexSettings, references: Tensor, metric: str) -> None:
        self.owner = owner
        self.metric = metric
        self._source = references.detach()  # held: its memory is not reused meanwhile
        self._source_view = _view_of(references)
        self.references = references.detach().to("cpu", torch.float32).contiguous()
        self.n = len(self.references)
        self.center = None
        if metric == "cosine":
            self._points = torch.nn.functional.normalize(self.references, dim=1, eps=_COSINE_EPS)
        else:
            # the torch backend's centring: keeps distances exact next to a large offset
            self.center = self.references.mean(dim=0, keepdim=True)
            self._points = self.references - self.center
        self.index, self._keep_alive = owner._make_index(self._points.shape[1], metric, self.n)
        data = self._points.numpy()
        if not self.index.is_trained:
            self.index.train(owner._training_sample(data))
        self.index.add(data)

    def indexes(self, references: Tensor, metric: str) -> bool:
        """True when this index was built over exactly ``references`` (the same memory, not
        modified in place since: torch's version counter) with ``metric``."""
        return metric == self.metric and _view_of(references) == self._source_view

    def _prepare(self, queries: Tensor) -> Tensor:
        q = queries.detach().to("cpu", torch.float32)
        if self.center is None:  # cosine
            return torch.nn.functional.normalize(q, dim=1, eps=_COSINE_EPS)
        return q - self.center

    def search(self, queries: Tensor, k: int, *, exclude: Tensor | None = None) -> KNNResult:
        """The ``k`` nearest references of each query, as in :class:`KNNBackend`.

        Approximate indexes may find fewer than ``k`` neighbours for a query; the missing
        slots hold index −1 and distance ``inf``.
        """
        queries = check_embeddings(queries, "queries")
        if queries.shape[1] != self.references.shape[1]:
            raise ValueError(
                "queries and references must have the same dimension; "
                f"got {queries.shape[1]} and {self.references.shape[1]}"
            )
        exclude = _check_exclude(exclude, len(queries), self.n)
        _check_k(k, self.n - (exclude is not None))
        q = self._prepare(queries)
        extra = _EXTRA_CANDIDATES if self.owner.index_type == "flat" else 0
        fetch = min(self.n, k + extra + (exclude is not None))
        if self.owner.index_type == "hnsw":
            self.index.hnsw.efSearch = self.owner.ef_search or max(64, 2 * fetch)
        rows = self.owner.query_chunk
        distances, indices = [], []
        for start in range(0, len(q), rows):
            chunk = q[start : start + rows]
            found, idx = self.index.search(chunk.numpy(), fetch)
            idx = torch.from_numpy(idx)
            ex = None if exclude is None else exclude[start : start + rows].cpu()
            if self.owner.exact:
                dist, idx = self._rerank(chunk, idx, ex, k)
            else:
                dist, idx = self._order(torch.from_numpy(found), idx, ex, k)
            distances.append(dist)
            indices.append(idx)
        if not distances:
            return KNNResult(torch.empty(0, k), torch.empty(0, k, dtype=torch.long))
        dist, idx = torch.cat(distances), torch.cat(indices)
        return KNNResult(dist.to(queries.device), idx.to(queries.device))

    def _order(
        self, found: Tensor, idx: Tensor, exclude: Tensor | None, k: int
    ) -> tuple[Tensor, Tensor]:
        """An approximate index's candidates, with the distances it computed (IVF-Flat and
        HNSW-Flat store the vectors: exact up to float32 rounding), excluded and missing ones
        last (index −1, distance inf), the k smallest by (distance, index): one sort of
        composite int64 keys (:mod:`~tripletlab.evaluate.selection`) per chunk."""
        missing = idx < 0
        if exclude is not None:
            missing |= idx == exclude[:, None]
        dist = 1 - found if self.metric == "cosine" else found  # faiss gives the similarity
        dist = dist.clamp_min(0).masked_fill(missing, float("inf"))
        keys = dist.view(torch.int32).long().bitwise_left_shift_(INDEX_BITS)
        keys.bitwise_or_(idx.masked_fill(missing, self.n))
        dist, idx = split_keys(keys.sort(dim=1).values[:, :k])
        idx.masked_fill_(idx == self.n, -1)
        return (dist.sqrt() if self.metric == "euclidean" else dist), idx

    def _rerank(
        self, q: Tensor, idx: Tensor, exclude: Tensor | None, k: int
    ) -> tuple[Tensor, Tensor]:
        """Exact distances of the candidates, excluded/missing ones last, k smallest by
        (distance, index)."""
        missing = idx < 0
        if exclude is not None:
            missing |= idx == exclude[:, None]
        safe = idx.clamp_min(0)
        cand = self._points[safe]  # (Q, C, D)
        if self.metric == "cosine":
            dist = (1 - torch.einsum("qd,qcd->qc", q, cand)).clamp_min(0)
        else:
            diff = cand - q[:, None, :]
            dist = (diff * diff).sum(-1)
        dist = dist.masked_fill(missing, float("inf"))
        idx = idx.masked_fill(missing, -1)
        # sort by index, then stably by distance: ties come out in ascending index
        by_index = torch.argsort(torch.where(missing, self.n, idx), dim=1, stable=True)
        dist, idx = dist.gather(1, by_index), idx.gather(1, by_index)
        order = torch.argsort(dist, dim=1, stable=True)[:, :k]
        dist, idx = dist.gather(1, order), idx.gather(1, order)
        if self.metric == "euclidean":
            dist = dist.sqrt()
        return dist, idx


def _view_of(tensor: Tensor) -> tuple[Any, ...]:
    """What identifies a tensor's values without reading them: its memory, layout and
    version counter (bumped by every in-place change, through any view)."""
    return (
        tensor.device,
        tensor.dtype,
        tensor.untyped_storage().data_ptr(),
        tensor.storage_offset(),
        tuple(tensor.shape),
        tensor.stride(),
        tensor._version,
    )
