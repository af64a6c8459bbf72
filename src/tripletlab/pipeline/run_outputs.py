"""What a finished ``train`` run leaves besides checkpoints and logs: the summary that goes
into ``metrics.json`` (:func:`run_summary`), the test embeddings and the report
(:func:`write_outputs`). Where each file goes is
:class:`~tripletlab.pipeline.run_dir.RunDir`'s business.

Example:
    >>> import torch
    >>> from types import SimpleNamespace
    >>> from tripletlab.pipeline.config import load_config
    >>> from tripletlab.pipeline.data import prepare_data
    >>> cfg = load_config(None, {"data.max_samples": 200})
    >>> data = prepare_data(cfg)
    >>> trainer = SimpleNamespace(history=[{"epoch_seconds": 1.0}, {"epoch_seconds": 3.0}],
    ...                           global_step=8)
    >>> test = SimpleNamespace(metrics={}, baseline={}, seconds=0.5)
    >>> summary = run_summary(cfg, data, trainer, test, train_s=4.0)
    >>> summary["epochs"], summary["steps"], summary["mean_epoch_seconds"]
    (2, 8, 2.0)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tripletlab.pipeline.config import RunConfig
from tripletlab.pipeline.data import PreparedData
from tripletlab.pipeline.evaluation import unavailable_metrics
from tripletlab.pipeline.final_evaluation import TestEvaluation
from tripletlab.pipeline.run_dir import RunDir
from tripletlab.train.trainer import Trainer

__all__ = ["run_summary", "write_outputs"]


def run_summary(
    cfg: RunConfig, data: PreparedData, trainer: Trainer, test: TestEvaluation, train_s: float
) -> dict[str, Any]:
    """``metrics.json``'s core: the splits' sizes, test and baseline metrics (and why some
    are unavailable), epochs, steps and timings."""
    history = trainer.history
    return {
        "dataset": data.dataset,
        "split": cfg.data.split,
        "n_train": len(data.y_train),
        "n_val": len(data.y_val),
        "n_test": len(data.y_test),
        "test": test.metrics,
        "baseline": test.baseline,
        # metric group -> why the test split cannot support it (its metrics are null)
        "unavailable": unavailable_metrics(data.y_test),
        "epochs": len(history),
        "steps": trainer.global_step,
        "train_seconds": train_s,
        "mean_epoch_seconds": float(np.mean([h["epoch_seconds"] for h in history])),
        "eval_seconds": test.seconds,
    }


def write_outputs(
    cfg: RunConfig,
    run: RunDir,
    data: PreparedData,
    trainer: Trainer,
    test: TestEvaluation,
    summary: dict[str, Any],
) -> Path | None:
    """The test embeddings and the report (when enabled); returns the report's path."""
    run.save_test_embeddings(test.embeddings, data.y_test, data.raw_test_flat)
    if not cfg.report.enabled:
        return None
    from tripletlab.pipeline.run_report import extend_run_report
    from tripletlab.report.markdown import write_report  # matplotlib: only when reporting

    report = write_report(
        run.path,
        cfg=cfg,
        summary=summary,
        history=trainer.history,
        embeddings=test.embeddings.numpy(),
        labels=data.y_test.numpy(),
        class_names=data.class_names,
        verification=test.verification,
        baseline_verification=test.baseline_verification,
        steps=run.read_steps(),
    )
    extend_run_report(
        report,
        test.embeddings,
        data.y_test.numpy(),
        data.raw_test.numpy(),
        data.class_names,
        cfg.loss.metric,
    )
    return report
