"""The final evaluation of a trained run: :func:`evaluate_test` embeds the test split and
computes the same retrieval (and verification) metrics for the embeddings *and for the raw
input features* — the baseline that shows what training bought.

Example:
    >>> import torch
    >>> from tripletlab.pipeline.config import load_config
    >>> from tripletlab.pipeline.data import prepare_data
    >>> from tripletlab.train.trainer import Trainer
    >>> cfg = load_config(None, {"data.max_samples": 200})
    >>> data = prepare_data(cfg)
    >>> model = torch.nn.Flatten()  # an "embedding" that is the raw features themselves
    >>> trainer = Trainer(model, lambda e, y: e.sum(), torch.optim.SGD([torch.zeros(1)]),
    ...                   normalize=False, progress=False)
    >>> test = evaluate_test(cfg, data, trainer)
    >>> tuple(test.embeddings.shape) == (len(data.y_test), 64)
    True
    >>> 0.5 < test.baseline["precision_at_1"] <= 1.0  # digits: raw pixels already retrieve
    True
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from tripletlab.pipeline.config import RunConfig
from tripletlab.pipeline.data import PreparedData
from tripletlab.pipeline.evaluation import embedding_metrics
from tripletlab.train.trainer import Trainer

__all__ = ["TestEvaluation", "evaluate_test"]


@dataclass
class TestEvaluation:
    """The test split's embeddings, metrics and ROC curves, and the baseline's."""

    embeddings: torch.Tensor
    metrics: dict[str, float | None]
    verification: dict[str, Any] | None
    baseline: dict[str, float | None]
    baseline_verification: dict[str, Any] | None
    seconds: float


def evaluate_test(cfg: RunConfig, data: PreparedData, trainer: Trainer) -> TestEvaluation:
    """Metrics of the test split's embeddings and of its raw features (the baseline)."""
    started = time.perf_counter()
    embeddings = trainer.embed(data.x_test, cfg.eval.batch_size)
    metrics, verification = embedding_metrics(embeddings, data.y_test, cfg, full=True)
    baseline, baseline_verification = embedding_metrics(
        data.raw_test_flat, data.y_test, cfg, full=True, raw=True
    )
    return TestEvaluation(
        embeddings,
        metrics,
        verification,
        baseline,
        baseline_verification,
        time.perf_counter() - started,
    )
