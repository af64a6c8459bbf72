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

from tripletlab.evaluate.clustering import clustering_metrics
from tripletlab.evaluate.knn import DEFAULT_MEMORY_BUDGET, KNNBackend
from tripletlab.evaluate.retrieval import retrieval_metrics
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
) -> dict[str, Any]:
    """All metrics of an embedding as one flat dict.

    Args:
        embeddings: (N, D) float embeddings (detached; any device).
        labels: (N,) integer labels.
        metric: ``"sqeuclidean"`` (default), ``"euclidean"`` or ``"cosine"``.
        ks: the k of recall@k.
        knn_k: neighbours voting in kNN classification.
        knn: kNN backend; default exact :class:`~tripletlab.evaluate.knn.TorchKNN`.
        references, reference_labels: optional separate gallery for retrieval (default:
            leave-one-out among ``embeddings``).
        verification: add ``verification_auc``, ``verification_accuracy``,
            ``verification_threshold`` and ``verification_tar_at_far_{0.001,0.01}``.
        clustering: add ``nmi`` and ``ami`` (k-means, one cluster per class).
        n_pairs: positive and negative verification pairs each.
        seed: seed of k-means and of the verification pairs.
        memory_budget_bytes: working memory of one kNN query chunk.
        return_curve: also return the ROC under ``"roc"`` (``fpr``, ``tpr``, ``thresholds``
            lists) — the only non-scalar entry.

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
    result: dict[str, Any] = dict(
        retrieval_metrics(
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
