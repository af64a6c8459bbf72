"""Retrieval metrics from one chunked kNN search: P@1, recall@k, R-precision, MAP@R, kNN accuracy.

For a query q with label y, its references are every reference except q itself (when the
queries are the references), ranked by ascending distance with ties broken by reference
index. Let R = the number of references labelled y and rel(i) = 1 when the i-th neighbour
is labelled y. Following Musgrave, Belongie & Lim, "A Metric Learning Reality Check"
(ECCV 2020), and pytorch-metric-learning's ``AccuracyCalculator``:

* precision@1   = rel(1)
* recall@k      = 1 if any of the first k neighbours is relevant (the "Recall@K" of the
  deep-metric-learning literature, e.g. Song et al. 2016), else 0
* R-precision   = (1/R) Σ_{i ≤ R} rel(i)
* MAP@R         = (1/R) Σ_{i ≤ R} P(i)·rel(i),  P(i) = (1/i) Σ_{j ≤ i} rel(j)
* kNN accuracy  = 1 if the majority label of the first k neighbours is y (a tied vote goes
  to the tied label whose first occurrence is nearest)

each averaged over the queries. Queries with R = 0 (no other member of their class) have
no defined R-precision and are left out of every average, as PML does; their number is
reported as ``n_lone_queries``.

All metrics come from ONE kNN search with k = max(max R, max ks, knn_k), processed in
query chunks whose neighbour lists are reduced to per-query scores at once, so the
(queries × k) neighbour matrix is never held whole: memory stays bounded even for
70,000 queries with R = 7,000.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from tripletlab.evaluate.knn import DEFAULT_MEMORY_BUDGET, KNNBackend, TorchKNN, iter_knn
from tripletlab.functional.distances import METRICS
from tripletlab.validation import check_choice, check_embeddings, check_labels


def retrieval_metrics(
    embeddings: Tensor,
    labels: Tensor,
    *,
    references: Tensor | None = None,
    reference_labels: Tensor | None = None,
    metric: str = "sqeuclidean",
    ks: Sequence[int] = (1, 5, 10),
    knn_k: int = 5,
    knn: KNNBackend | None = None,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
) -> dict[str, float]:
    """Precision@1, recall@k, R-precision, MAP@R and kNN accuracy of an embedding.

    Args:
        embeddings: (Q, D) float query embeddings.
        labels: (Q,) integer labels of the queries.
        references: (N, D) reference embeddings, or None to retrieve among the queries
            themselves (leave-one-out: each query's own entry is excluded).
        reference_labels: (N,) labels of ``references`` (required with it).
        metric: ``"sqeuclidean"`` (default), ``"euclidean"`` or ``"cosine"``.
        ks: the k of recall@k (each clamped to the number of eligible references).
        knn_k: neighbours that vote in kNN classification.
        knn: a :class:`~tripletlab.evaluate.knn.KNNBackend`; default an exact
            :class:`~tripletlab.evaluate.knn.TorchKNN`.
        memory_budget_bytes: working memory for one query chunk (distance block and
            neighbour lists).

    Returns:
        dict with ``precision_at_1``, ``r_precision``, ``map_at_r``, ``recall_at_{k}`` for
        each k, ``knn_accuracy``, ``n_queries`` (queries averaged over) and
        ``n_lone_queries`` (left out, R = 0). Metrics are NaN when no query has R > 0.

    Example:
        >>> x = torch.tensor([[0.0], [0.1], [1.0], [1.2], [0.6]])
        >>> y = torch.tensor([0, 0, 1, 1, 1])
        >>> m = retrieval_metrics(x, y, ks=(1,))
        >>> m["precision_at_1"], m["map_at_r"], m["n_queries"]
        (1.0, 0.9, 5)
    """
    check_choice(metric, "metric", METRICS)
    embeddings = check_embeddings(embeddings, "embeddings")
    labels = check_labels(labels, len(embeddings)).long()
    leave_one_out = references is None
    if leave_one_out:
        if reference_labels is not None:
            raise ValueError("reference_labels given without references")
        references, reference_labels = embeddings, labels
    else:
        references = check_embeddings(references, "references")
        if reference_labels is None:
            raise ValueError("references given without reference_labels")
        reference_labels = check_labels(reference_labels, len(references), "reference_labels")
    reference_labels = reference_labels.long().to(labels.device)
    ks = _check_ks(ks)
    knn = TorchKNN(memory_budget_bytes=memory_budget_bytes) if knn is None else knn

    relevant_counts = _relevant_counts(labels, reference_labels) - int(leave_one_out)
    eligible = len(references) - int(leave_one_out)
    names = ["precision_at_1", "r_precision", "map_at_r", *(f"recall_at_{k}" for k in ks)]
    names.append("knn_accuracy")
    answerable = relevant_counts > 0
    n_queries = int(answerable.sum())
    result: dict[str, float] = {name: float("nan") for name in names}
    result.update(n_queries=n_queries, n_lone_queries=len(labels) - n_queries)
    if n_queries == 0 or eligible < 1:
        return result

    k_search = min(eligible, max(int(relevant_counts.max()), max(ks), knn_k))
    # Labels renumbered 0…C−1 in int32: the (chunk × k) gather writes half the bytes.
    _, inverse = torch.unique(torch.cat([reference_labels, labels]), return_inverse=True)
    compact_labels = inverse[: len(reference_labels)].to(torch.int32)
    compact_queries = inverse[len(reference_labels) :].to(torch.int32)
    per_query = {name: torch.empty(n_queries, dtype=torch.float64) for name in names}
    rows = max(1, memory_budget_bytes // (16 * len(references) + 48 * k_search))
    query_ids = answerable.nonzero().squeeze(1)
    queries = embeddings if n_queries == len(embeddings) else embeddings[query_ids]
    chunks = iter_knn(
        knn,
        queries,
        k_search,
        references,
        metric=metric,
        exclude=query_ids if leave_one_out else None,
        rows=rows,
    )
    for start, found in chunks:
        ids = query_ids[start : start + len(found.indices)]
        scores = _chunk_scores(
            compact_labels[found.indices.to(labels.device)],
            compact_queries[ids],
            relevant_counts[ids],
            ks,
            min(knn_k, k_search),
        )
        for name, value in scores.items():
            per_query[name][start : start + len(ids)] = value.cpu()
    # One mean over all per-query scores: the result does not depend on the chunking.
    result.update({name: float(per_query[name].mean()) for name in names})
    return result


def _chunk_scores(
    neighbour_labels: Tensor, query_labels: Tensor, r: Tensor, ks: tuple[int, ...], knn_k: int
) -> dict[str, Tensor]:
    """Per-query float64 scores of one chunk (neighbour_labels: (C, k) sorted lists)."""
    k = neighbour_labels.shape[1]
    match = neighbour_labels == query_labels[:, None]
    scores = {"precision_at_1": match[:, 0].double()}
    for kk in ks:
        scores[f"recall_at_{kk}"] = match[:, : min(kk, k)].any(dim=1).double()
    ranks = torch.arange(1, k + 1, device=match.device)
    # With balanced classes every query has R = k and every position counts: no mask.
    uniform = bool((r == k).all())
    relevant = match if uniform else match & (ranks[None, :] <= r[:, None])
    hits, average_precision = _hits_and_average_precision(relevant)
    scores["r_precision"] = hits / r
    scores["map_at_r"] = average_precision / r
    votes = _majority_vote(neighbour_labels[:, :knn_k])
    scores["knn_accuracy"] = (votes == query_labels).double()
    return scores


def _hits_and_average_precision(relevant: Tensor) -> tuple[Tensor, Tensor]:
    """Per row: the number of relevant entries, and Σ over them of P(i) = hits so far / i.

    On CPU only the relevant positions are visited (numpy ``flatnonzero`` + ``bincount``):
    the m-th relevant entry of a row, at rank i, adds m / i. Elsewhere one cumulative sum
    over the whole (C, k) matrix. Both in float64.
    """
    if relevant.device.type != "cpu":
        return _hits_and_average_precision_torch(relevant)
    c, k = relevant.shape
    flat = np.flatnonzero(relevant.numpy())
    rows = flat // k
    rank = flat - rows * k + 1
    hits = np.bincount(rows, minlength=c)
    first = np.cumsum(hits) - hits
    nth = np.arange(1, len(flat) + 1) - first[rows]
    average_precision = np.bincount(rows, weights=nth / rank, minlength=c)
    return torch.from_numpy(hits.astype(np.float64)), torch.from_numpy(average_precision)


def _hits_and_average_precision_torch(relevant: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`_hits_and_average_precision` with torch ops only (any device)."""
    ranks = torch.arange(1, relevant.shape[1] + 1, device=relevant.device, dtype=torch.float64)
    hits_so_far = relevant.cumsum(dim=1, dtype=torch.float64)
    return hits_so_far[:, -1].clone(), hits_so_far.div_(ranks).mul_(relevant).sum(dim=1)


def _majority_vote(neighbour_labels: Tensor) -> Tensor:
    """Most frequent label per row; ties go to the label whose first occurrence is nearest."""
    c, k = neighbour_labels.shape
    values, inverse = torch.unique(neighbour_labels, return_inverse=True)
    counts = torch.zeros(c, len(values), dtype=torch.long, device=values.device)
    counts.scatter_add_(1, inverse, torch.ones_like(inverse))
    positions = torch.arange(k, device=values.device).expand(c, k)
    first = torch.full((c, len(values)), k, dtype=torch.long, device=values.device)
    first.scatter_reduce_(1, inverse, positions, reduce="amin")
    score = counts * (k + 1) - first  # more votes first, then the nearest first occurrence
    return values[score.argmax(dim=1)]


def _relevant_counts(labels: Tensor, reference_labels: Tensor) -> Tensor:
    """For each query, the number of references sharing its label."""
    values, counts = torch.unique(reference_labels, return_counts=True)
    if len(values) == 0:
        return torch.zeros_like(labels)
    position = torch.searchsorted(values, labels).clamp_max(len(values) - 1)
    found = values[position] == labels
    return torch.where(found, counts[position], torch.zeros_like(labels))


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty sequence of positive ints; got {ks!r}")
    return ks
