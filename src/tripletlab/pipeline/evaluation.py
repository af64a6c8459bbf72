"""Evaluating embeddings the way a run does, and the ``evaluate`` verb (:func:`evaluate_run`).

Every test sample is a query against all the others; trained embeddings are ranked by the
run's loss distance, raw features (the baseline: what training bought) by squared L2.

Example:
    >>> import torch
    >>> from tripletlab.pipeline.config import load_config
    >>> x, y = torch.eye(4).repeat(3, 1), torch.arange(4).repeat(3)
    >>> metrics, _ = embedding_metrics(x, y, load_config(), full=False)
    >>> metrics["precision_at_1"]
    1.0
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tripletlab.evaluate import evaluate_embeddings, retrieval_metrics
from tripletlab.pipeline.config import RunConfig
from tripletlab.pipeline.data import load_data, prepare_data
from tripletlab.pipeline.trained import TrainedModel

__all__ = ["embedding_metrics", "evaluate_run"]

#: The distance raw features are ranked by in the baseline.
BASELINE_METRIC = "sqeuclidean"


def embedding_metrics(
    embeddings: Tensor, labels: Tensor, cfg: RunConfig, full: bool, raw: bool = False
) -> tuple[dict[str, float], dict[str, Any] | None]:
    """Metrics and, with ``full``, the verification ROC curve (else None).

    ``full=False``: retrieval metrics only (the cheap per-epoch validation); ``raw=True``:
    the embeddings are raw features, ranked by squared L2.
    """
    metric = BASELINE_METRIC if raw else cfg.loss.metric
    ks, knn_k = tuple(cfg.eval.recall_at), cfg.eval.knn_k
    if not full:
        found = retrieval_metrics(embeddings, labels, metric=metric, ks=ks, knn_k=knn_k)
        return {k: float(v) for k, v in found.items()}, None
    out = evaluate_embeddings(
        embeddings, labels, metric=metric, ks=ks, knn_k=knn_k, seed=cfg.seed, return_curve=True
    )
    curve = out.pop("roc", None)
    if curve is not None:
        curve = dict(curve, auc=out.get("verification_auc"))
    return {k: float(v) for k, v in out.items()}, curve


def evaluate_run(
    run_dir: str | Path, dataset: str | None = None, data_dir: str | None = None
) -> dict[str, Any]:
    """The ``evaluate`` verb: metrics of a trained run on its own test split (default), or
    on all of ``dataset``, beside the raw-feature baseline.

    Returns ``{"dataset", "n", "metrics", "baseline"}``.
    """
    trained = TrainedModel.load(run_dir)
    cfg = trained.cfg
    if dataset is None and trained.meta.get("streamed"):
        from tripletlab.pipeline.images import embed_stream, prepare_stream

        streamed = prepare_stream(cfg)  # the run's own streamed test split
        test_set: Any = streamed.x_test
        embedded = embed_stream(
            trained.model, test_set, cfg.eval.batch_size,
            normalize=cfg.model.normalize, workers=cfg.train.workers,
        )  # fmt: skip
        labels, name = streamed.y_test, streamed.dataset
        return {
            "dataset": name,
            "n": len(labels),
            "metrics": embedding_metrics(embedded, labels, cfg, full=True)[0],
            "baseline": embedding_metrics(streamed.raw_test, labels, cfg, full=True, raw=True)[0],
        }
    if dataset is None:
        data = prepare_data(cfg)
        raw, labels, name = data.raw_test.numpy(), data.y_test, data.dataset
    else:
        loaded = load_data(cfg, dataset, data_dir)
        raw, labels, name = loaded.features.numpy(), loaded.labels, loaded.name
    flat = torch.as_tensor(raw, dtype=torch.float32).reshape(len(raw), -1)
    return {
        "dataset": name,
        "n": len(labels),
        "metrics": embedding_metrics(trained.embed(raw), labels, cfg, full=True)[0],
        "baseline": embedding_metrics(flat, labels, cfg, full=True, raw=True)[0],
    }
