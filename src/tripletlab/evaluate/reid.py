"""The person / vehicle re-identification protocol: CMC rank-k, mAP and mINP, query vs gallery.

For each query, gallery images of its identity taken by its camera are ignored (they are
"too easy": the same track), and junk images (identity −1) are ignored for every query;
distractors (identity 0) stay as negatives. Queries left with no relevant gallery image are
skipped and counted. This is Market-1501's official ``evaluation.m`` (Zheng et al. 2015) and
torchreid's / fast-reid's ``eval_market1501``; DukeMTMC-reID, MSMT17 and VeRi-776 use the same
rule. With Q valid queries (see :mod:`tripletlab.evaluate.ranking` for the per-query terms):

* CMC(k) = (1/Q) Σ_q [first relevant kept rank ≤ k]; rank-1/5/10 are CMC(1), CMC(5), CMC(10);
* mAP = (1/Q) Σ_q AP_q, with the non-interpolated AP (torchreid, fast-reid and most papers)
  or, with ``average_precision="trapezoid"``, the MATLAB script's trapezoidal AP;
* mINP = (1/Q) Σ_q R_q / (rank of the hardest relevant item) (Ye et al. 2021, TPAMI).

Computed exactly, one chunk of query rows at a time (:func:`rank_blocks`): the working memory
is ``memory_budget_bytes`` however large the gallery, never the full Q×G matrix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from torch import Tensor

from tripletlab.evaluate.knn import DEFAULT_MEMORY_BUDGET
from tripletlab.evaluate.ranking import QueryRanks, distance_blocks, rank_blocks
from tripletlab.functional._validation import check_choice

JUNK_LABEL = -1
AVERAGE_PRECISION = ("standard", "trapezoid")
CMC_RANKS: tuple[int, ...] = (1, 5, 10)
MAX_CMC_RANK = 50


def reid_metrics(
    query: Tensor,
    query_ids: np.ndarray,
    gallery: Tensor,
    gallery_ids: np.ndarray,
    *,
    query_cameras: np.ndarray | None = None,
    gallery_cameras: np.ndarray | None = None,
    metric: str = "euclidean",
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    **options: Any,
) -> dict[str, Any]:
    """CMC, mAP and mINP of query embeddings searched in gallery embeddings.

    Args:
        query, gallery: (Q, D) and (G, D) float embeddings.
        query_ids, gallery_ids: identities (gallery −1 = junk, 0 = distractor).
        query_cameras, gallery_cameras: camera ids; without them no same-camera exclusion.
        metric: ``"euclidean"`` (re-id's usual), ``"sqeuclidean"`` (same ranking) or
            ``"cosine"``.
        memory_budget_bytes: working memory of one chunk of query rows.
        **options: ``ranks``, ``max_rank``, ``average_precision``, ``junk_label``,
            ``top_k`` of :func:`reid_metrics_from_blocks`.

    Returns:
        see :func:`summarize_reid`.

    Example:
        >>> import torch
        >>> q = torch.tensor([[0.0]]); g = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
        >>> m = reid_metrics(q, np.array([7]), g, np.array([7, 5, 7, -1]),
        ...                  query_cameras=np.array([1]), gallery_cameras=np.array([1, 2, 2, 2]))
        >>> m["rank_1"], m["map"], m["minp"]   # item 0: same camera; item 3: junk
        (0.0, 0.5, 0.5)
    """
    blocks = distance_blocks(query, gallery, metric=metric, memory_budget_bytes=memory_budget_bytes)
    return reid_metrics_from_blocks(
        blocks,
        query_ids,
        gallery_ids,
        query_cameras=query_cameras,
        gallery_cameras=gallery_cameras,
        **options,
    )


def reid_metrics_from_blocks(
    blocks: Iterable[tuple[int, Tensor]],
    query_ids: np.ndarray,
    gallery_ids: np.ndarray,
    *,
    query_cameras: np.ndarray | None = None,
    gallery_cameras: np.ndarray | None = None,
    ranks: Sequence[int] = CMC_RANKS,
    max_rank: int = MAX_CMC_RANK,
    average_precision: str = "standard",
    junk_label: int | None = JUNK_LABEL,
    top_k: int = 10,
) -> dict[str, Any]:
    """:func:`reid_metrics` from any (rows × G) distance blocks (e.g. re-ranked distances)."""
    check_choice(average_precision, "average_precision", AVERAGE_PRECISION)
    ranked = rank_blocks(
        blocks,
        query_ids,
        gallery_ids,
        query_cameras=query_cameras,
        gallery_cameras=gallery_cameras,
        junk_label=junk_label,
        top_k=top_k,
    )
    return summarize_reid(
        ranked, ranks=ranks, max_rank=max_rank, average_precision=average_precision
    )


def summarize_reid(
    ranked: QueryRanks,
    *,
    ranks: Sequence[int] = CMC_RANKS,
    max_rank: int = MAX_CMC_RANK,
    average_precision: str = "standard",
) -> dict[str, Any]:
    """Protocol numbers from per-query ranks.

    Returns:
        dict with ``rank_{k}`` for each k, ``map``, ``minp``, ``cmc`` (list, CMC(1…max_rank)),
        ``n_queries`` (valid), ``n_queries_without_match`` (skipped) and
        ``average_precision`` (the AP form). Metrics are NaN when no query is valid.
    """
    valid = ranked.answerable
    first = ranked.first_rank[valid]
    n_valid = int(valid.sum())
    ap = (
        ranked.average_precision
        if average_precision == "standard"
        else ranked.average_precision_trapezoid
    )
    cmc = [float((first <= k).mean()) if n_valid else float("nan") for k in range(1, max_rank + 1)]
    result: dict[str, Any] = {
        f"rank_{k}": float((first <= k).mean()) if n_valid else float("nan") for k in ranks
    }
    result.update(
        map=float(ap[valid].mean()) if n_valid else float("nan"),
        minp=float(ranked.inp[valid].mean()) if n_valid else float("nan"),
        cmc=cmc,
        n_queries=n_valid,
        n_queries_without_match=len(valid) - n_valid,
        average_precision=average_precision,
    )
    return result
