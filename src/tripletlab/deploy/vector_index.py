"""Brute-force nearest identities in numpy: the search index of a gallery store.

Distances (the metrics a run is trained with; ``q`` a query row, ``g`` a gallery row):

* ``sqeuclidean``: ``‖q‖² + ‖g‖² − 2⟨q, g⟩``, clamped at 0 (one matrix product);
* ``euclidean``: the square root of that;
* ``cosine``: ``1 − ⟨q, g⟩ / (‖q‖ ‖g‖)`` (0 for a zero row: no direction, no similarity).

An identity's distance to a query is that of its *nearest* gallery image (the k-NN rule of
FaceNet's recognition); :meth:`VectorIndex.nearest_identities` returns the ``k`` nearest
distinct identities per query. Exact, O(Q·N·D) for the distances, then O(Q·N) for the
per-identity minimum (rows grouped by identity once per change of the gallery, then one
``np.minimum.reduceat`` — no sort per query) and O(G) for the top k of the G identities.

Example:
    >>> import numpy as np
    >>> index = VectorIndex(2, "sqeuclidean")
    >>> index.add(np.array([1, 2, 3]), np.array([7, 7, 9]), np.array([[0, 0], [1, 0], [3, 0]], "f4"))
    >>> found = index.nearest_identities(np.array([[0.9, 0]], "f4"), 5)[0]
    >>> [(m.identity_id, m.image_id, round(m.distance, 4)) for m in found]
    [(7, 2, 0.01), (9, 3, 4.41)]
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from tripletlab.errors import ConfigError

__all__ = ["METRICS", "IndexMatch", "VectorIndex", "pairwise_distances"]

METRICS = ("sqeuclidean", "euclidean", "cosine")


class IndexMatch(NamedTuple):
    """One identity found for a query: its id, its nearest image and that distance."""

    identity_id: int
    image_id: int
    distance: float


def pairwise_distances(
    queries: np.ndarray,
    gallery: np.ndarray,
    metric: str,
    gallery_sq_norms: np.ndarray | None = None,
) -> np.ndarray:
    """(Q, N) distances between rows (see the module docstring for the formulas).

    ``gallery_sq_norms``: ‖g‖² of each gallery row, when the caller keeps them (an index
    searched many times need not recompute them per query).

    Example:
        >>> pairwise_distances(np.array([[1.0, 0]]), np.array([[0, 1.0]]), "cosine").tolist()
        [[1.0]]
    """
    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {METRICS}; got {metric!r}")
    q = np.asarray(queries, dtype=np.float32)
    g = np.asarray(gallery, dtype=np.float32)
    g_sq = (g * g).sum(1) if gallery_sq_norms is None else gallery_sq_norms
    if metric == "cosine":
        qn = np.linalg.norm(q, axis=1, keepdims=True)
        q_unit = np.divide(q, qn, out=np.zeros_like(q), where=qn > 0)
        gn = np.sqrt(g_sq)
        cosine = np.divide(
            q_unit @ g.T,
            gn[None, :],
            out=np.zeros((len(q), len(g)), np.float32),
            where=gn[None, :] > 0,
        )
        return np.clip(1.0 - cosine, 0.0, 2.0)
    squared = (q * q).sum(1)[:, None] + g_sq[None, :] - 2.0 * (q @ g.T)
    squared = np.maximum(squared, 0.0)
    return squared if metric == "sqeuclidean" else np.sqrt(squared)


class VectorIndex:
    """Gallery rows (image id, identity id, embedding) searched exactly by brute force."""

    def __init__(self, dim: int, metric: str) -> None:
        if metric not in METRICS:
            raise ConfigError(f"metric must be one of {METRICS}; got {metric!r}")
        self.dim, self.metric = int(dim), metric
        self.clear()

    def clear(self) -> None:
        """Drop every row."""
        self.image_ids = np.empty(0, dtype=np.int64)
        self.identity_ids = np.empty(0, dtype=np.int64)
        self.embeddings = np.empty((0, self.dim), dtype=np.float32)
        self._grouping: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._sq_norms: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.image_ids)

    def add(self, image_ids: np.ndarray, identity_ids: np.ndarray, embeddings: np.ndarray) -> None:
        """Append rows (embeddings (n, dim))."""
        embeddings = np.asarray(embeddings, dtype=np.float32).reshape(-1, self.dim)
        self.image_ids = np.concatenate([self.image_ids, np.asarray(image_ids, dtype=np.int64)])
        self.identity_ids = np.concatenate(
            [self.identity_ids, np.asarray(identity_ids, dtype=np.int64)]
        )
        self.embeddings = np.concatenate([self.embeddings, embeddings])
        self._grouping = self._sq_norms = None

    def remove_identity(self, identity_id: int) -> int:
        """Drop the rows of one identity; returns how many."""
        keep = self.identity_ids != identity_id
        removed = int((~keep).sum())
        self.image_ids = self.image_ids[keep]
        self.identity_ids = self.identity_ids[keep]
        self.embeddings = self.embeddings[keep]
        self._grouping = self._sq_norms = None
        return removed

    def _groups(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows ordered by identity (stable), each identity's first position, its id."""
        if self._grouping is None:
            order = np.argsort(self.identity_ids, kind="stable")
            owners = self.identity_ids[order]
            starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
            self._grouping = (order, starts, owners[starts])
        return self._grouping

    def nearest_identities(self, queries: np.ndarray, k: int) -> list[list[IndexMatch]]:
        """Per query, the ``k`` nearest distinct identities, nearest first (ties: lower
        identity id first; within an identity, its earliest nearest image)."""
        if len(self) == 0:
            return [[] for _ in range(len(queries))]
        order, starts, owners = self._groups()
        if self._sq_norms is None:
            self._sq_norms = (self.embeddings * self.embeddings).sum(1)
        distances = pairwise_distances(queries, self.embeddings, self.metric, self._sq_norms)
        ordered = distances[:, order]
        best = np.minimum.reduceat(ordered, starts, axis=1)  # (Q, G) per-identity minimum
        ends = np.r_[starts[1:], len(order)]
        k = min(k, len(starts))
        results = []
        for row, per_identity in zip(ordered, best, strict=True):
            # Everything up to the k-th smallest distance (all of a tie at the boundary), then
            # sorted by (distance, identity id) and cut: the same answer on every platform.
            kth = np.partition(per_identity, k - 1)[k - 1]
            top = np.flatnonzero(per_identity <= kth)
            top = top[np.lexsort((owners[top], per_identity[top]))][:k]
            matches = []
            for g in top:
                j = starts[g] + int(np.argmin(row[starts[g] : ends[g]]))
                image = int(self.image_ids[order[j]])
                matches.append(IndexMatch(int(owners[g]), image, float(row[j])))
            results.append(matches)
        return results
