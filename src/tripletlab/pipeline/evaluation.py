"""Evaluating embeddings the way a run does, and the ``evaluate`` verb (:func:`evaluate_run`).

Every test sample is a query against all the others; trained embeddings are ranked by the
run's loss distance, raw features (the baseline: what training bought) by squared L2.

A split whose labels cannot support a group of metrics — one class (no clustering, no
negative pairs), no class with two samples (no retrieval, no positive pairs) — still gets
every other metric: :func:`unavailable_metrics` names the groups that cannot be computed and
why, and their values are None (``null`` in ``metrics.json``, ``n/a`` in the report).

Example:
    >>> import torch
    >>> from tripletlab.pipeline.config import load_config
    >>> x, y = torch.eye(4).repeat(3, 1), torch.arange(4).repeat(3)
    >>> metrics, _ = embedding_metrics(x, y, load_config(), full=False)
    >>> metrics["precision_at_1"]
    1.0
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tripletlab.evaluate import evaluate_embeddings, retrieval_metrics, shard_range
from tripletlab.evaluate.verification import FARS
from tripletlab.pipeline.config import RunConfig
from tripletlab.pipeline.data import load_data, prepare_data
from tripletlab.pipeline.trained import TrainedModel

__all__ = ["METRIC_GROUPS", "embedding_metrics", "evaluate_run", "unavailable_metrics"]

#: The distance raw features are ranked by in the baseline.
BASELINE_METRIC = "sqeuclidean"

#: The metric keys of each group that a split's labels may rule out.
METRIC_GROUPS: dict[str, tuple[str, ...]] = {
    "retrieval": ("precision_at_1", "r_precision", "map_at_r", "knn_accuracy"),
    "clustering": ("nmi", "ami"),
    "verification": (
        "verification_auc",
        "verification_accuracy",
        "verification_threshold",
        *(f"verification_tar_at_far_{far:g}" for far in FARS),
    ),
}


def unavailable_metrics(labels: Tensor) -> dict[str, str]:
    """The metric groups ``labels`` cannot support, each with the reason.

    Example:
        >>> unavailable_metrics(torch.tensor([0, 0, 0]))["clustering"]
        'the split has 1 class; clustering needs at least 2'
        >>> sorted(unavailable_metrics(torch.tensor([0, 1, 2])))
        ['retrieval', 'verification']
    """
    sizes = torch.bincount(labels.long()) if len(labels) else torch.zeros(0, dtype=torch.long)
    n_classes, largest = int((sizes > 0).sum()), int(sizes.max()) if len(sizes) else 0
    reasons = {}
    if n_classes < 2:
        noun = "class" if n_classes == 1 else "classes"
        reasons["clustering"] = f"the split has {n_classes} {noun}; clustering needs at least 2"
        reasons["verification"] = f"the split has {n_classes} {noun}; no negative pairs"
    if largest < 2:
        reasons["retrieval"] = "no class of the split has 2 samples; no query has a match"
        reasons["verification"] = "no class of the split has 2 samples; no positive pairs"
    return reasons


def embedding_metrics(
    embeddings: Tensor,
    labels: Tensor,
    cfg: RunConfig,
    full: bool,
    raw: bool = False,
    *,
    missing: dict[str, str] | None = None,
    **search: Any,
) -> tuple[dict[str, float | None], dict[str, Any] | None]:
    """Metrics and, with ``full``, the verification ROC curve (else None).

    ``full=False``: retrieval metrics only (the cheap per-epoch validation); ``raw=True``:
    the embeddings are raw features, ranked by squared L2. The metrics of a group the labels
    cannot support are None: ``missing`` names those groups (default
    :func:`unavailable_metrics` of ``labels``; a sharded evaluation passes the whole set's).
    ``search`` (full only): ``method``, ``memory_budget_bytes``, ``threads``, ``knn_options``,
    ``gap_queries``, ``sharded`` of :func:`~tripletlab.evaluate.evaluate_embeddings`.
    """
    metric = BASELINE_METRIC if raw else cfg.loss.metric
    ks, knn_k = tuple(cfg.eval.recall_at), cfg.eval.knn_k
    if not full:
        found = retrieval_metrics(embeddings, labels, metric=metric, ks=ks, knn_k=knn_k)
        return {k: float(v) for k, v in found.items()}, None
    missing = unavailable_metrics(labels) if missing is None else missing
    out = evaluate_embeddings(
        embeddings,
        labels,
        metric=metric,
        ks=ks,
        knn_k=knn_k,
        seed=cfg.seed,
        return_curve=True,
        clustering="clustering" not in missing,
        verification="verification" not in missing,
        **search,
    )
    curve = out.pop("roc", None)
    if curve is not None:
        curve = dict(curve, auc=out.get("verification_auc"))
    metrics: dict[str, float | None] = {k: float(v) for k, v in out.items()}
    for group in missing:
        keys = METRIC_GROUPS[group] + (
            tuple(f"recall_at_{k}" for k in ks) if group == "retrieval" else ()
        )
        metrics.update(dict.fromkeys(keys))
    return metrics, curve


@dataclass
class _Split:
    """The set an evaluation ranks: its name, labels, flattened raw features (the baseline's
    input) and how to embed a range of its rows with the trained model."""

    name: str
    labels: Tensor
    raw: Tensor
    embed: Callable[[range], Tensor]


def _split_of(trained: TrainedModel, dataset: str | None, data_dir: str | None) -> _Split:
    cfg = trained.cfg
    if dataset is None and trained.meta.get("streamed"):
        from tripletlab.pipeline.images import embed_stream, prepare_stream

        streamed = prepare_stream(cfg)  # the run's own streamed test split
        stream: Any = streamed.x_test

        def embed_streamed(rows: range) -> Tensor:
            return embed_stream(
                trained.model, stream.subset(list(rows)), cfg.eval.batch_size,
                normalize=cfg.model.normalize, workers=cfg.train.workers,
            )  # fmt: skip

        return _Split(streamed.dataset, streamed.y_test, streamed.raw_test_flat, embed_streamed)
    if dataset is None:
        data = prepare_data(cfg)
        raw, labels, name = data.raw_test.numpy(), data.y_test, data.dataset
    else:
        loaded = load_data(cfg, dataset, data_dir)
        raw, labels, name = loaded.features.numpy(), loaded.labels, loaded.name
    flat = torch.as_tensor(raw, dtype=torch.float32).reshape(len(raw), -1)
    return _Split(name, labels, flat, lambda rows: trained.embed(raw[rows.start : rows.stop]))


def evaluate_run(
    run_dir: str | Path,
    dataset: str | None = None,
    data_dir: str | None = None,
    *,
    sharded: bool = False,
    **knn: Any,
) -> dict[str, Any]:
    """The ``evaluate`` verb: metrics of a trained run on its own test split (default), or
    on all of ``dataset``, beside the raw-feature baseline.

    ``knn``: ``method`` (exact / flat / ivf / hnsw), ``memory_budget_bytes``, ``threads``,
    ``knn_options``, ``gap_queries`` of :func:`~tripletlab.evaluate.evaluate_embeddings`
    (the trained embedding's search; the baseline stays exact). ``sharded``: this process is
    one rank of a ``torch.distributed`` group (``torchrun``); it embeds and queries only its
    :func:`~tripletlab.evaluate.shard_range` of the set, and every rank returns the same
    dict, equal to one process's.

    Returns ``{"dataset", "n", "metrics", "baseline", "unavailable", "search"}``
    (``unavailable``: the metric groups the labels cannot support, with the reason;
    ``search``: the method and faiss options of the trained embedding's kNN search).
    """
    trained = TrainedModel.load(run_dir)
    split = _split_of(trained, dataset, data_dir)
    rows = shard_range(len(split.labels)) if sharded else range(len(split.labels))
    labels = split.labels[rows.start : rows.stop]
    missing = unavailable_metrics(split.labels)
    common: dict[str, Any] = {"missing": missing, "sharded": sharded}
    trained_metrics = embedding_metrics(
        split.embed(rows), labels, trained.cfg, full=True, **common, **knn
    )[0]
    raw = split.raw[rows.start : rows.stop]
    return {
        "dataset": split.name,
        "n": len(split.labels),
        "metrics": trained_metrics,
        "baseline": embedding_metrics(raw, labels, trained.cfg, True, True, **common)[0],
        "unavailable": missing,
        "search": _search_of(knn, sharded),
    }


def _search_of(knn: dict[str, Any], sharded: bool) -> dict[str, Any]:
    """What searched the trained embedding's neighbours: the method and its faiss options."""
    found = {"method": knn.get("method", "exact"), **knn.get("knn_options", {})}
    return found | ({"sharded": True} if sharded else {})
