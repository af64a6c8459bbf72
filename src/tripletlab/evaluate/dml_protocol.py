"""Deep-metric-learning benchmark protocol: P@1, R-precision, MAP@R, Recall@k, per class.

Two settings (Musgrave et al. 2020, "A Metric Learning Reality Check"):

* query = gallery (CUB-200-2011, Cars196, Stanford Online Products): every test image
  queries all the *other* test images (its own entry excluded);
* query ≠ gallery (In-shop Clothes): the query split searched in the gallery split.

R is the number of gallery items sharing the query's label; queries with R = 0 are left
out and counted. Recall@k is the DML literature's "1 if any of the first k is relevant".
The literature reports Recall@k at the ks of :data:`RECALL_KS`.

The numbers agree with :func:`tripletlab.evaluate.retrieval.retrieval_metrics` (the fast
path for plain embeddings); this module works from any distance blocks (re-ranked, query
expanded) and keeps per-query values for per-class tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from torch import Tensor

from tripletlab.evaluate.knn import DEFAULT_MEMORY_BUDGET
from tripletlab.evaluate.ranking import QueryRanks, distance_blocks, rank_blocks

#: Recall@k cut-offs of the DML literature per benchmark (Song et al. 2016; Liu et al. 2016).
RECALL_KS: dict[str, tuple[int, ...]] = {
    "cub200": (1, 2, 4, 8),
    "cars196": (1, 2, 4, 8),
    "sop": (1, 10, 100, 1000),
    "inshop": (1, 10, 20, 30, 40, 50),
}
DEFAULT_KS: tuple[int, ...] = (1, 2, 4, 8)


def dml_ranks(
    query: Tensor,
    query_labels: np.ndarray,
    gallery: Tensor | None = None,
    gallery_labels: np.ndarray | None = None,
    *,
    metric: str = "sqeuclidean",
    top_k: int = 10,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
) -> QueryRanks:
    """Per-query ranks; ``gallery=None`` means query = gallery with self excluded."""
    if gallery is None:
        blocks = distance_blocks(
            query, query, metric=metric, memory_budget_bytes=memory_budget_bytes
        )
        return rank_blocks(blocks, query_labels, query_labels, exclude_self=True, top_k=top_k)
    if gallery_labels is None:
        raise ValueError("gallery given without gallery_labels")
    blocks = distance_blocks(query, gallery, metric=metric, memory_budget_bytes=memory_budget_bytes)
    return rank_blocks(blocks, query_labels, gallery_labels, top_k=top_k)


def dml_metrics(
    query: Tensor,
    query_labels: np.ndarray,
    gallery: Tensor | None = None,
    gallery_labels: np.ndarray | None = None,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    metric: str = "sqeuclidean",
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
) -> dict[str, Any]:
    """P@1, R-precision, MAP@R and Recall@k (see the module docstring).

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0], [0.1], [1.0], [1.2], [0.6]])
        >>> m = dml_metrics(x, np.array([0, 0, 1, 1, 1]), ks=(1,))
        >>> m["precision_at_1"], m["map_at_r"], m["n_queries"]
        (1.0, 0.9, 5)
    """
    ranked = dml_ranks(
        query,
        query_labels,
        gallery,
        gallery_labels,
        metric=metric,
        top_k=0,
        memory_budget_bytes=memory_budget_bytes,
    )
    return summarize_dml(ranked, ks)


def dml_metrics_from_blocks(
    blocks: Iterable[tuple[int, Tensor]],
    query_labels: np.ndarray,
    gallery_labels: np.ndarray,
    *,
    exclude_self: bool = False,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, Any]:
    """:func:`dml_metrics` from any (rows × G) distance blocks (re-ranked, expanded…)."""
    ranked = rank_blocks(blocks, query_labels, gallery_labels, exclude_self=exclude_self, top_k=0)
    return summarize_dml(ranked, ks)


def summarize_dml(ranked: QueryRanks, ks: Sequence[int] = DEFAULT_KS) -> dict[str, Any]:
    """Averages over queries with R > 0: ``precision_at_1``, ``r_precision``, ``map_at_r``,
    ``recall_at_{k}``, ``n_queries``, ``n_lone_queries`` (R = 0, left out). NaN when none."""
    valid = ranked.answerable
    n = int(valid.sum())

    def mean(values: np.ndarray) -> float:
        return float(values[valid].mean()) if n else float("nan")

    first = ranked.first_rank
    result: dict[str, Any] = {
        "precision_at_1": mean((first == 1).astype(float)),
        "r_precision": mean(ranked.r_precision),
        "map_at_r": mean(ranked.map_at_r),
    }
    result.update({f"recall_at_{k}": mean(((first >= 1) & (first <= k)).astype(float)) for k in ks})
    result.update(n_queries=n, n_lone_queries=len(valid) - n)
    return result


def per_class_table(
    ranked: QueryRanks,
    query_labels: np.ndarray,
    gallery_labels: np.ndarray,
    *,
    class_names: dict[int, str] | None = None,
) -> list[dict[str, Any]]:
    """Per-class P@1 and MAP@R, worst first, each with its most-confused class.

    The most-confused class of class c is the label most often found at rank 1 among c's
    queries whose first result is wrong (ties: the smaller label); None when none is wrong.
    Needs ``ranked`` with ``top_k ≥ 1``.

    Returns:
        rows ``{"label", "name", "n_queries", "precision_at_1", "map_at_r",
        "confused_with", "confused_name", "confused_count"}`` sorted by MAP@R then P@1
        ascending (the worst classes first); queries with R = 0 are left out.

    Example:
        >>> import torch
        >>> x = torch.tensor([[0.0], [0.1], [0.2], [5.0], [5.1]])
        >>> y = np.array([0, 0, 1, 1, 2])
        >>> rows = per_class_table(dml_ranks(x, y, top_k=1), y, y)
        >>> [(r["label"], r["precision_at_1"], r["confused_with"]) for r in rows]
        [(1, 0.0, 0), (0, 1.0, None)]
    """
    if ranked.top.shape[1] < 1:
        raise ValueError("per_class_table needs ranks computed with top_k >= 1")
    query_labels = np.asarray(query_labels)
    names = class_names or {}
    top1 = ranked.top[:, 0]
    top1_labels = np.where(top1 >= 0, np.asarray(gallery_labels)[np.maximum(top1, 0)], -1)
    rows = []
    valid = ranked.answerable
    for label in np.unique(query_labels[valid]):
        mine = valid & (query_labels == label)
        wrong = top1_labels[mine & (top1_labels != label)]
        confused, count = _most_common(wrong)
        rows.append(
            {
                "label": int(label),
                "name": names.get(int(label), str(int(label))),
                "n_queries": int(mine.sum()),
                "precision_at_1": float((ranked.first_rank[mine] == 1).mean()),
                "map_at_r": float(ranked.map_at_r[mine].mean()),
                "confused_with": confused,
                "confused_name": None if confused is None else names.get(confused, str(confused)),
                "confused_count": count,
            }
        )
    rows.sort(key=lambda r: (r["map_at_r"], r["precision_at_1"], r["label"]))
    return rows


def _most_common(values: np.ndarray) -> tuple[int | None, int]:
    if len(values) == 0:
        return None, 0
    labels, counts = np.unique(values, return_counts=True)
    best = int(np.argmax(counts))  # np.unique sorts, so ties go to the smaller label
    return int(labels[best]), int(counts[best])
