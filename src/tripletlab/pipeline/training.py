"""The ``train`` verb: :func:`run_training`, from data to report.

Steps, each a function below: resolve the config (a resumed run keeps the one it started
with) → :func:`build` the network, loss, optimiser and schedule → :func:`fit` them with the
:class:`~tripletlab.train.trainer.Trainer` (validation retrieval metrics every epoch, a
checkpoint every epoch) → :func:`evaluate_test`: the test split's embeddings *and the raw
input features* with the same metrics (the baseline: what training bought) →
:func:`write_outputs`: ``metrics.json``, the test embeddings and the report. Where each file
goes is :class:`~tripletlab.pipeline.run_dir.RunDir`'s business.

Under ``torchrun`` every rank trains (DDP, global mining); rank 0 alone writes config, logs,
checkpoints, metrics and the report.

Example:
    >>> from tripletlab.pipeline import load_config, run_training
    >>> cfg = load_config(None, {"train.epochs": 1, "out": "/tmp/tl-doc-run",
    ...                          "report.enabled": False, "train.progress": False})
    >>> result = run_training(cfg)  # doctest: +SKIP
    >>> sorted(result.metrics)[:2]  # doctest: +SKIP
    ['ami', 'knn_accuracy']
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tripletlab.errors import ConfigError
from tripletlab.nn.loss_base import BatchLoss
from tripletlab.pipeline.config import RunConfig, config_from_dict
from tripletlab.pipeline.data import PreparedData, prepare_data
from tripletlab.pipeline.evaluation import embedding_metrics
from tripletlab.pipeline.factories import build_loss, build_optimizer, build_scheduler
from tripletlab.pipeline.run_dir import RunDir
from tripletlab.pipeline.trained import build_run_model
from tripletlab.train.checkpoint import load_checkpoint
from tripletlab.train.distributed_training import DistributedContext, distributed_context
from tripletlab.train.trainer import Trainer, torch_threads

__all__ = ["KEY_METRICS", "RunParts", "RunResult", "TestEvaluation", "run_training"]

#: Metrics printed by the CLI and put first in the report table.
KEY_METRICS = ("precision_at_1", "map_at_r", "r_precision")


@dataclass
class RunResult:
    """What :func:`run_training` returns (and writes into ``run_dir``).

    ``metrics``/``baseline``: test metrics of the embedding and of the raw features (empty on
    ranks other than 0); ``summary``: the content of ``metrics.json``.
    """

    run_dir: Path
    metrics: dict[str, float]
    baseline: dict[str, float]
    history: list[dict[str, Any]]
    report_path: Path | None
    seconds: float
    dataset: str
    n_test: int
    rank: int = 0
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def extra(self) -> dict[str, Any]:
        """Deprecated: the untyped dict of before (``summary`` plus rank, dataset, n_test)."""
        warnings.warn(
            "RunResult.extra is deprecated; use RunResult.summary, .rank, .dataset, .n_test",
            DeprecationWarning,
            stacklevel=2,
        )
        return {**self.summary, "rank": self.rank, "dataset": self.dataset, "n_test": self.n_test}


@dataclass
class RunParts:
    """What :func:`build` makes from the config."""

    model: nn.Module
    loss: BatchLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None


@dataclass
class TestEvaluation:
    """The test split's embeddings, metrics and ROC curves, and the baseline's."""

    embeddings: torch.Tensor
    metrics: dict[str, float]
    verification: dict[str, Any] | None
    baseline: dict[str, float]
    baseline_verification: dict[str, Any] | None
    seconds: float


def _resumed_config(cfg: RunConfig, run: RunDir) -> RunConfig:
    """The config a resumed run started with (except the kill test hook)."""
    if not run.checkpoint_path.is_file():
        raise ConfigError(f"--resume: no checkpoint at {run.checkpoint_path}")
    saved = load_checkpoint(run.checkpoint_path).get("config", {}).get("run")
    if saved is None or saved == cfg.to_dict():
        return cfg
    saved["train"]["kill_after_steps"] = cfg.train.kill_after_steps
    return config_from_dict(saved)


def _threads(cfg: RunConfig) -> int | None:
    if cfg.train.threads is None and cfg.model.name == "mlp":
        return 1  # a small MLP is fastest on one thread, above all on a shared CPU
    return cfg.train.threads


def build(cfg: RunConfig, data: PreparedData) -> RunParts:
    """The network, loss, optimiser and learning-rate schedule of the config."""
    model = build_run_model(cfg, data.in_shape)
    loss = build_loss(
        cfg.loss.name, cfg.loss.margin, cfg.loss.metric, cfg.loss.smoothing, cfg.loss.reduction
    )
    o = cfg.optim
    optimizer = build_optimizer(o.name, model.parameters(), o.lr, o.weight_decay, o.momentum)
    scheduler = build_scheduler(o.scheduler, optimizer, cfg.train.epochs, o.step_size, o.gamma)
    return RunParts(model, loss, optimizer, scheduler)


def _checkpoint_meta(cfg: RunConfig, data: PreparedData) -> dict[str, Any]:
    # What a later `embed`/`evaluate` needs to rebuild and feed the model.
    return {
        "run": cfg.to_dict(),
        "in_shape": list(data.in_shape),
        "input_mean": data.input_mean,
        "input_std": data.input_std,
        "class_names": data.class_names,
    }


def fit(
    cfg: RunConfig,
    run: RunDir,
    data: PreparedData,
    parts: RunParts,
    dctx: DistributedContext,
    resume: bool,
) -> tuple[Trainer, float]:
    """Train (or continue training) the parts; returns the trainer and the training time."""

    def validate(trainer: Trainer) -> dict[str, float]:
        if len(data.y_val) < 2:
            return {}
        embeddings = trainer.embed(data.x_val, cfg.eval.batch_size)
        return embedding_metrics(embeddings, data.y_val, cfg, full=False)[0]

    logger = run.logger() if dctx.is_main else None
    try:
        trainer = dctx.trainer_class(
            parts.model,
            parts.loss,
            parts.optimizer,
            scheduler=parts.scheduler,
            normalize=cfg.model.normalize,
            grad_clip=cfg.optim.grad_clip,
            device=cfg.train.device,
            logger=logger,
            validate=validate if dctx.is_main else None,
            validate_every=cfg.eval.validate_every,
            checkpoint_dir=run.checkpoints_dir,
            checkpoint_every=cfg.train.checkpoint_every,
            config=_checkpoint_meta(cfg, data),
            seed=cfg.seed,
            progress=cfg.train.progress,
            kill_after_steps=cfg.train.kill_after_steps,
        )
        started = time.perf_counter()
        t = cfg.train
        trainer.fit(
            data.x_train,
            data.y_train,
            epochs=t.epochs,
            p=t.p,
            k=t.k,
            steps_per_epoch=t.steps_per_epoch,
            resume_from=run.checkpoint_path if resume else None,
        )
        return trainer, time.perf_counter() - started
    finally:
        if logger is not None:
            logger.close()


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


def _summary(
    cfg: RunConfig, data: PreparedData, trainer: Trainer, test: TestEvaluation, train_s: float
) -> dict[str, Any]:
    history = trainer.history
    return {
        "dataset": data.dataset,
        "split": cfg.data.split,
        "n_train": len(data.y_train),
        "n_val": len(data.y_val),
        "n_test": len(data.y_test),
        "test": test.metrics,
        "baseline": test.baseline,
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


def run_training(cfg: RunConfig, resume: bool = False) -> RunResult:
    """Train, evaluate against the raw-feature baseline and write the report.

    Args:
        cfg: the resolved run configuration.
        resume: continue from the run directory's last checkpoint (ConfigError if missing).

    Returns:
        A :class:`RunResult` with the test metrics, the baseline and the report path.
    """
    started = time.perf_counter()
    dctx = distributed_context()
    run = RunDir(cfg.out_dir)
    if resume:
        cfg = _resumed_config(cfg, run)
    run.create()
    if dctx.is_main:
        run.write_config(cfg.to_dict())
    with torch_threads(_threads(cfg)):
        torch.manual_seed(cfg.seed)
        data = prepare_data(cfg)
        trainer, train_seconds = fit(cfg, run, data, build(cfg, data), dctx, resume)
        if not dctx.is_main:  # the other ranks are done; rank 0 evaluates and reports
            dctx.close()
            seconds = time.perf_counter() - started
            return RunResult(
                run.path, {}, {}, trainer.history, None, seconds,
                data.dataset, len(data.y_test), rank=dctx.rank,
            )  # fmt: skip
        test = evaluate_test(cfg, data, trainer)
        summary = _summary(cfg, data, trainer, test, train_seconds)
        report_path = write_outputs(cfg, run, data, trainer, test, summary)
    seconds = time.perf_counter() - started
    summary["total_seconds"] = seconds
    run.write_metrics(summary)
    dctx.close()
    return RunResult(
        run.path, test.metrics, test.baseline, trainer.history, report_path, seconds,
        data.dataset, len(data.y_test), summary=summary,
    )  # fmt: skip
