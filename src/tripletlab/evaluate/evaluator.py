"""One call for every metric of an embedding, and the same metrics on raw input features.

:func:`evaluate_embeddings` gathers the retrieval metrics (P@1, recall@k, R-precision,
MAP@R, kNN accuracy — one chunked kNN search), the clustering metrics (NMI, AMI of k-means)
and the verification metrics (AUC, best accuracy, TAR@FAR) into one flat dict of numbers,
ready for ``metrics.json`` and a report table. :func:`evaluate_baseline` runs the same
evaluation on the flattened raw inputs: the "before training" column a user compares with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from tripletlab.distributed import all_gather_no_grad
from tripletlab.evaluate.approximate import approximation_gap, make_knn_backend
from tripletlab.evaluate.clustering import clustering_metrics
from tripletlab.evaluate.knn import DEFAULT_MEMORY_BUDGET, KNNBackend
from tripletlab.evaluate.retrieval import retrieval_metrics
from tripletlab.evaluate.sharded import sharded_retrieval_metrics
from tripletlab.evaluate.verification import evaluate_verification

_CURVE_KEYS = ("fpr", "tpr", "thresholds")


def evaluate_embeddings(
    embeddings: Tensor,
    labels: Tensor,
    *,
    metric: str = "sqeuclidean",
    ks: Sequence[int] = (1, 5, 10),
    knn_k: int = 5,
    knn: KNNBackend | None = None,
    references: Tensor | None = None,
    reference_labels: Tensor | None = None,
    verification: bool = True,
    clustering: bool = True,
    n_pairs: int = 10_000,
    seed: int = 0,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    return_curve: bool = False,
    method: str = "exact",
    threads: int | None = None,
    knn_options: dict[str, Any] | None = None,
    gap_queries: int | None = None,
    sharded: bool = False,
) -> dict[str, Any]:
    """All metrics of an embedding as one flat dict.

    Args:
        embeddings: (N, D) float embeddings (detached; any device).
        labels: (N,) integer labels.
        metric: ``"sqeuclidean"`` (default), ``"euclidean"`` or ``"cosine"``.
        ks: the k of recall@k.
        knn_k: neighbours voting in kNN classification.
        knn: kNN backend; default ``make_knn_backend(method, ...)`` (exact
            :class:`~tripletlab.evaluate.knn.TorchKNN` unless ``method`` says otherwise).
        references, reference_labels: optional separate gallery for retrieval (default:
            leave-one-out among ``embeddings``).
        verification: add ``verification_auc``, ``verification_accuracy``,
            ``verification_threshold`` and ``verification_tar_at_far_{0.001,0.01}``.
        clustering: add ``nmi`` and ``ami`` (k-means, one cluster per class).
        n_pairs: positive and negative verification pairs each.
        seed: seed of k-means and of the verification pairs.
        memory_budget_bytes: working memory of the exact engine's distance blocks.
        return_curve: also return the ROC under ``"roc"`` (``fpr``, ``tpr``, ``thresholds``
            lists) — the only non-scalar entry.
        method: ``"exact"`` (default), ``"flat"``, ``"ivf"`` or ``"hnsw"``
            (:func:`~tripletlab.evaluate.approximate.make_knn_backend`); giving both
            ``knn`` and a non-default ``method`` or ``threads`` is an error.
        threads: CPU threads of the kNN search (default: torch's thread count).
        knn_options: faiss parameters of an approximate ``method`` (``nlist``,
            ``nprobe``, ``hnsw_m``, ``ef_construction``, ``ef_search``, …).
        gap_queries: with an approximate backend, also measure each retrieval metric's
            exact-vs-approximate gap on this many sampled queries against all references
            (keys ``{name}_approximation_gap`` and ``approximation_gap_queries``); None:
            not measured. Not with ``references`` or ``sharded``.
        sharded: ``embeddings``/``labels`` are this rank's shard of a set split over the
            ``torch.distributed`` ranks (in rank order): retrieval is computed with the
            queries split (:mod:`tripletlab.evaluate.sharded`), clustering and
            verification on the gathered set; every rank returns the same dict.

    Returns:
        dict of floats/ints: the keys of
        :func:`~tripletlab.evaluate.retrieval.retrieval_metrics`, plus the verification and
        clustering keys above when enabled.

    Example:
        >>> x = torch.tensor([[0.0], [0.1], [0.2], [5.0], [5.1], [5.3]])
        >>> y = torch.tensor([0, 0, 0, 1, 1, 1])
        >>> m = evaluate_embeddings(x, y, ks=(1,), n_pairs=20)
        >>> m["map_at_r"], m["nmi"], m["verification_auc"]
        (1.0, 1.0, 1.0)
    """
    embeddings = embeddings.detach()
    if knn is not None and (method != "exact" or threads is not None or knn_options):
        raise ValueError("give either knn or method/threads/knn_options, not both")
    if knn is None:
        knn = make_knn_backend(
            method, memory_budget_bytes=memory_budget_bytes, threads=threads, **(knn_options or {})
        )
    if gap_queries is not None and (references is not None or sharded):
        raise ValueError("gap_queries works with leave-one-out on one process only")
    retrieval = sharded_retrieval_metrics if sharded else retrieval_metrics
    result: dict[str, Any] = dict(
        retrieval(
            embeddings,
            labels,
            references=references,
            reference_labels=reference_labels,
            metric=metric,
            ks=ks,
            knn_k=knn_k,
            knn=knn,
            memory_budget_bytes=memory_budget_bytes,
        )
    )
    if gap_queries is not None and not getattr(knn, "exact", True):
        gap = approximation_gap(
            embeddings,
            labels,
            knn,
            n_queries=gap_queries,
            seed=seed,
            metric=metric,
            ks=ks,
            knn_k=knn_k,
            memory_budget_bytes=memory_budget_bytes,
        )
        result.update({f"{name}_approximation_gap": value for name, value in gap["gap"].items()})
        result["approximation_gap_queries"] = gap["n_sampled"]
    if sharded:  # clustering and verification see the whole set on every rank
        embeddings, labels = all_gather_no_grad(embeddings), all_gather_no_grad(labels)
    if clustering:
        result.update(clustering_metrics(embeddings, labels, seed=seed))
    if verification:
        found = evaluate_verification(embeddings, labels, metric=metric, n_pairs=n_pairs, seed=seed)
        result["verification_auc"] = found["auc"]
        result["verification_accuracy"] = found["best_accuracy"]
        result["verification_threshold"] = found["best_threshold"]
        for key, value in found.items():
            if key.startswith("tar_at_far_"):
                result[f"verification_{key}"] = value
        if return_curve:
            result["roc"] = {key: found[key] for key in _CURVE_KEYS}
    return result


def evaluate_baseline(features: Tensor, labels: Tensor, **kwargs: Any) -> dict[str, Any]:
    """:func:`evaluate_embeddings` on the raw inputs flattened to (N, prod(shape[1:])).

    The same metrics, distance and seeds as the trained embedding, so the difference is
    what training bought. Integer inputs (e.g. uint8 pixels) are converted to float32.

    Example:
        >>> images = torch.rand(6, 1, 2, 2)
        >>> sorted(evaluate_baseline(images, torch.tensor([0, 0, 0, 1, 1, 1]), ks=(1,),
        ...        clustering=False, verification=False))[:3]
        ['knn_accuracy', 'map_at_r', 'n_lone_queries']
    """
    flat = features.detach().reshape(len(features), -1)
    if not flat.is_floating_point():
        flat = flat.to(torch.float32)
    return evaluate_embeddings(flat, labels, **kwargs)
