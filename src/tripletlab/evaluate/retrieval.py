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
query chunks whose neighbour lists are reduced to per-query scores at once (on the worker
thread that searched the chunk, with the default exact engine), so the (queries × k)
neighbour matrix is never held whole: memory stays bounded even for 70,000 queries with
R = 7,000. Each average is an exactly rounded sum (``math.fsum``) of the per-query scores,
so the numbers do not depend on chunking, thread count or sharding
(:mod:`tripletlab.evaluate.sharded` splits the queries over processes).

A per-query exclusion (``mask_fn``: e.g. a re-identification protocol's same-camera
gallery entries) removes references from a query's ranking: R then counts only the
eligible references of the query's label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from tripletlab.evaluate.chunked import MaskFn
from tripletlab.evaluate.knn import DEFAULT_MEMORY_BUDGET, KNNBackend, KNNResult, TorchKNN, iter_knn
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
    mask_fn: MaskFn | None = None,
) -> dict[str, float]:
    """Precision@1, recall@k, R-precision, MAP@R and kNN accuracy of an embedding.

    Args:
        embeddings: (Q, D) float query embeddings.
        labels: (Q,) integer labels of the queries.
        references: (N, D) reference (gallery) embeddings, or None to retrieve among the
            queries themselves (leave-one-out: each query's own entry is excluded).
        reference_labels: (N,) labels of ``references`` (required with it).
        metric: ``"sqeuclidean"`` (default), ``"euclidean"`` or ``"cosine"``.
        ks: the k of recall@k (each clamped to the number of eligible references).
        knn_k: neighbours that vote in kNN classification.
        knn: a :class:`~tripletlab.evaluate.knn.KNNBackend`; default an exact
            :class:`~tripletlab.evaluate.knn.TorchKNN` with ``memory_budget_bytes``.
        memory_budget_bytes: working memory of the default backend's distance blocks.
        mask_fn: optional per-query exclusion, ``mask_fn(start, stop)`` → (stop − start, N)
            bool tensor, True where query ``start + i`` must not see a reference (or
            None); needs a backend with ``map_chunks`` (the default). It is called twice
            per chunk (counting R, then searching), possibly from worker threads.

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
    exclude = torch.arange(len(embeddings)) if leave_one_out else None
    knn = TorchKNN(memory_budget_bytes=memory_budget_bytes) if knn is None else knn
    scores = per_query_scores(
        embeddings,
        labels,
        references,
        reference_labels,
        knn=knn,
        exclude=exclude,
        mask_fn=mask_fn,
        metric=metric,
        ks=ks,
        knn_k=knn_k,
        memory_budget_bytes=memory_budget_bytes,
    )
    return summarise(scores)


@dataclass
class QueryScores:
    """Per-query float64 scores of the answerable queries (R > 0), in query order.

    ``scores`` maps each metric name to an (n_queries,) tensor; ``n_lone_queries`` counts
    the queries left out. :func:`summarise` turns it into the metrics dict.
    """

    scores: dict[str, Tensor]
    n_lone_queries: int


def per_query_scores(
    queries: Tensor,
    labels: Tensor,
    references: Tensor,
    reference_labels: Tensor,
    *,
    knn: KNNBackend,
    exclude: Tensor | None = None,
    mask_fn: MaskFn | None = None,
    metric: str = "sqeuclidean",
    ks: Sequence[int] = (1, 5, 10),
    knn_k: int = 5,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
) -> QueryScores:
    """The per-query scores behind :func:`retrieval_metrics` (query set ≠ reference set
    allowed; ``exclude`` (Q,) is one reference index per query to leave out, −1 for none,
    and ``mask_fn`` a per-query exclusion mask; ``memory_budget_bytes`` sizes the query
    chunks of backends without ``map_chunks``). Inputs are assumed validated."""
    check_choice(metric, "metric", METRICS)
    ks = _check_ks(ks)
    labels = labels.long()
    reference_labels = reference_labels.long().to(labels.device)
    if mask_fn is not None and not hasattr(knn, "map_chunks"):
        raise ValueError(f"mask_fn needs a backend with map_chunks (TorchKNN); got {knn!r}")
    relevant, eligible = _relevant_and_eligible(labels, reference_labels, exclude, mask_fn)
    names = ["precision_at_1", "r_precision", "map_at_r", *(f"recall_at_{k}" for k in ks)]
    names.append("knn_accuracy")
    answerable = relevant > 0
    n_queries = int(answerable.sum())
    per_query = {name: torch.empty(n_queries, dtype=torch.float64) for name in names}
    result = QueryScores(per_query, n_lone_queries=len(labels) - n_queries)
    max_eligible = int(eligible.max()) if len(eligible) else 0
    if n_queries == 0 or max_eligible < 1:
        return result
    k_search = min(
        len(references) - int(exclude is not None),
        max(int(relevant.max()), max(ks), knn_k),
    )
    # Labels renumbered 0…C−1 in int32: the (chunk × k) gather writes half the bytes.
    _, inverse = torch.unique(torch.cat([reference_labels, labels]), return_inverse=True)
    compact_refs = inverse[: len(reference_labels)].to(torch.int32)
    compact_queries = inverse[len(reference_labels) :].to(torch.int32)
    query_ids = answerable.nonzero().squeeze(1)
    subset = n_queries != len(labels)
    chunk_queries = queries[query_ids] if subset else queries
    chunk_exclude = None if exclude is None else exclude[query_ids]
    # eligible < k somewhere: positions past a query's eligible count are masked entries
    check_eligible = bool((eligible[query_ids] < k_search).any())
    knn_k = min(knn_k, k_search)

    exact_engine = hasattr(knn, "map_chunks")  # never returns missing (−1) neighbours

    def score(start: int, found: KNNResult) -> dict[str, Tensor]:
        ids = query_ids[start : start + len(found.indices)]
        indices = found.indices.to(labels.device)
        neighbours = compact_refs[indices.clamp_min(0)]
        if not exact_engine:  # approximate indexes mark missing neighbours with −1
            neighbours.masked_fill_(indices < 0, -1)
        return _chunk_scores(
            neighbours,
            compact_queries[ids],
            relevant[ids],
            eligible[ids] if check_eligible else None,
            ks,
            knn_k,
        )

    sub_mask = _subset_mask(mask_fn, query_ids) if subset and mask_fn is not None else mask_fn
    rows = max(1, memory_budget_bytes // (16 * len(references) + 48 * k_search))
    if exact_engine:
        chunks = knn.map_chunks(  # type: ignore[attr-defined]
            chunk_queries,
            k_search,
            references,
            fn=score,
            metric=metric,
            exclude=chunk_exclude,
            mask_fn=sub_mask,
        )
    else:
        chunks = (
            (start, score(start, found))
            for start, found in iter_knn(
                knn,
                chunk_queries,
                k_search,
                references,
                metric=metric,
                exclude=chunk_exclude,
                rows=rows,
            )
        )
    for start, values in chunks:
        for name, value in values.items():
            per_query[name][start : start + len(value)] = value.cpu()
    return result


def summarise(found: QueryScores) -> dict[str, float]:
    """Average the per-query scores: an exactly rounded sum (``math.fsum``), so the result
    depends neither on the chunking nor on how the queries were split over processes."""
    n_queries = len(next(iter(found.scores.values())))
    result: dict[str, float] = {
        name: math.fsum(values.tolist()) / n_queries if n_queries else float("nan")
        for name, values in found.scores.items()
    }
    result.update(n_queries=n_queries, n_lone_queries=found.n_lone_queries)
    return result


def _relevant_and_eligible(
    labels: Tensor, reference_labels: Tensor, exclude: Tensor | None, mask_fn: MaskFn | None
) -> tuple[Tensor, Tensor]:
    """Per query: R (eligible references sharing its label) and the eligible count."""
    n = len(reference_labels)
    relevant = _relevant_counts(labels, reference_labels)
    eligible = torch.full_like(labels, n)
    if exclude is not None:
        has = exclude >= 0
        eligible -= has.long()
        own = torch.zeros_like(has)
        own[has] = reference_labels[exclude[has]] == labels[has]
        relevant -= own.long()
    if mask_fn is None:
        return relevant, eligible
    rows = max(1, DEFAULT_MEMORY_BUDGET // max(2 * n, 1))
    for start in range(0, len(labels), rows):
        stop = min(start + rows, len(labels))
        mask = mask_fn(start, stop)
        if mask is None:
            continue
        if exclude is not None:  # an index both masked and excluded counts once
            ex = exclude[start:stop]
            has = (ex >= 0).nonzero().squeeze(1)
            mask = mask.clone()
            mask[has, ex[has]] = False
        same = labels[start:stop, None] == reference_labels[None, :]
        relevant[start:stop] -= (mask & same).sum(dim=1)
        eligible[start:stop] -= mask.sum(dim=1)
    return relevant, eligible


def _subset_mask(mask_fn: MaskFn, query_ids: Tensor) -> MaskFn:
    """``mask_fn`` for the answerable queries only (rows picked from the full ranges)."""

    def sub(start: int, stop: int) -> Tensor | None:
        ids = query_ids[start:stop]
        if len(ids) == 0:
            return None
        mask = mask_fn(int(ids[0]), int(ids[-1]) + 1)
        return None if mask is None else mask[ids - ids[0]]

    return sub


def _chunk_scores(
    neighbour_labels: Tensor,
    query_labels: Tensor,
    r: Tensor,
    eligible: Tensor | None,
    ks: tuple[int, ...],
    knn_k: int,
) -> dict[str, Tensor]:
    """Per-query float64 scores of one chunk (neighbour_labels: (C, k) sorted lists of
    labels ≥ 0; positions at or past a query's ``eligible`` count are masked references
    and neither match nor vote for a real label)."""
    k = neighbour_labels.shape[1]
    if eligible is not None:
        positions = torch.arange(k, device=neighbour_labels.device)
        past = positions[None, :] >= eligible[:, None].to(neighbour_labels.device)
        neighbour_labels = neighbour_labels.masked_fill(past, -1)
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
