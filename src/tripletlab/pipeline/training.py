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

import contextlib
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tripletlab.atomic import remove_stale_temps
from tripletlab.errors import ConfigError
from tripletlab.nn.loss_base import BatchLoss
from tripletlab.pipeline.config import RunConfig
from tripletlab.pipeline.data import PreparedData, prepare_data
from tripletlab.pipeline.devices import check_threads, resolve_device
from tripletlab.pipeline.evaluation import embedding_metrics, unavailable_metrics
from tripletlab.pipeline.factories import build_loss, build_optimizer, build_scheduler
from tripletlab.pipeline.interrupts import InterruptGuard
from tripletlab.pipeline.memory import (
    available_memory,
    check_run_memory,
    estimate_run_memory,
    parameter_count,
)
from tripletlab.pipeline.resume import check_same_data, data_fingerprint, resumed_config
from tripletlab.pipeline.run_dir import RunDir
from tripletlab.pipeline.run_lock import RunLock
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
    metrics: dict[str, float | None]
    baseline: dict[str, float | None]
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
    metrics: dict[str, float | None]
    verification: dict[str, Any] | None
    baseline: dict[str, float | None]
    baseline_verification: dict[str, Any] | None
    seconds: float


def _resume_state(cfg: RunConfig, run: RunDir, extend: bool) -> tuple[RunConfig, str | None]:
    """The config to resume with and the data fingerprint the run stored (see
    :mod:`tripletlab.pipeline.resume`)."""
    if not run.checkpoint_path.is_file():
        raise ConfigError(f"--resume: no checkpoint at {run.checkpoint_path}")
    meta = load_checkpoint(run.checkpoint_path, required=("config",))["config"]
    meta = meta if isinstance(meta, dict) else {}
    saved = meta.get("run")
    if not isinstance(saved, dict):
        return cfg, None
    return resumed_config(cfg, saved, extend=extend), meta.get("data_fingerprint")


def _threads(cfg: RunConfig) -> int | None:
    if cfg.train.threads is None and cfg.model.name == "mlp":
        return 1  # a small MLP is fastest on one thread, above all on a shared CPU
    return None if cfg.train.threads is None else check_threads(cfg.train.threads)


def _check_memory(cfg: RunConfig, data: PreparedData) -> None:
    """Refuse a run the machine's memory cannot hold, before it starts."""
    with torch.device("meta"):  # shapes only: a huge network costs nothing here
        shadow = build_run_model(cfg, data.in_shape)
    parts = estimate_run_memory(
        parameters=parameter_count(shadow),
        batch=cfg.train.p * cfg.train.k,
        dim=cfg.model.embedding_dim,
        in_features=math.prod(data.in_shape),
        n_test=len(data.y_test),
    )
    check_run_memory(parts, available_memory())


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


def _fingerprint(data: PreparedData) -> str:
    return data_fingerprint(data.x_train, data.y_train, data.x_val, data.y_val, data.x_test,
                            data.y_test)  # fmt: skip


def _checkpoint_meta(cfg: RunConfig, data: PreparedData) -> dict[str, Any]:
    # What a later `embed`/`evaluate` needs to rebuild and feed the model, and what a
    # resume checks it continues the same run on the same data.
    return {
        "run": cfg.to_dict(),
        "data_fingerprint": _fingerprint(data),
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
        found = embedding_metrics(embeddings, data.y_val, cfg, full=False)[0]
        return {key: value for key, value in found.items() if value is not None}

    logger = run.logger() if dctx.is_main else None
    try:
        trainer = dctx.trainer_class(
            parts.model,
            parts.loss,
            parts.optimizer,
            scheduler=parts.scheduler,
            normalize=cfg.model.normalize,
            grad_clip=cfg.optim.grad_clip,
            device=resolve_device(cfg.train.device),
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


def run_training(cfg: RunConfig, resume: bool = False, *, extend: bool = False) -> RunResult:
    """Train, evaluate against the raw-feature baseline and write the report.

    The run directory is locked for the whole run (a second process gets a one-line
    :class:`~tripletlab.pipeline.run_lock.RunLockedError`); Ctrl-C stops the run wherever it
    is (``KeyboardInterrupt``) and leaves its last checkpoint to resume from.

    Args:
        cfg: the resolved run configuration.
        resume: continue from the run directory's last checkpoint (ConfigError if missing,
            or if ``cfg`` sets a value or the data differ from the run's).
        extend: with ``resume``, allow a larger ``train.epochs`` than the run started with.

    Returns:
        A :class:`RunResult` with the test metrics, the baseline and the report path.
    """
    dctx = distributed_context()
    run = RunDir(cfg.out_dir).create()
    lock = RunLock(run.path) if dctx.is_main else contextlib.nullcontext()
    with lock, InterruptGuard() as guard:
        if dctx.is_main:  # under the lock no one else writes here: a killed writer's temps
            remove_stale_temps(run.path)
        return _run(cfg, run, dctx, guard, resume, extend)


def _run(
    cfg: RunConfig,
    run: RunDir,
    dctx: DistributedContext,
    guard: InterruptGuard,
    resume: bool,
    extend: bool,
) -> RunResult:
    started = time.perf_counter()
    saved_fingerprint = None
    if resume:
        cfg, saved_fingerprint = _resume_state(cfg, run, extend)
    resolve_device(cfg.train.device)
    with torch_threads(_threads(cfg)):
        torch.manual_seed(cfg.seed)
        data = prepare_data(cfg)
        _check_memory(cfg, data)
        if resume:
            check_same_data(saved_fingerprint, _fingerprint(data), data.dataset)
        if dctx.is_main:
            run.write_config(cfg.to_dict())
        trainer, train_seconds = fit(cfg, run, data, build(cfg, data), dctx, resume)
        guard.check()
        if not dctx.is_main:  # the other ranks are done; rank 0 evaluates and reports
            dctx.close()
            seconds = time.perf_counter() - started
            return RunResult(
                run.path, {}, {}, trainer.history, None, seconds,
                data.dataset, len(data.y_test), rank=dctx.rank,
            )  # fmt: skip
        test = evaluate_test(cfg, data, trainer)
        guard.check()
        summary = _summary(cfg, data, trainer, test, train_seconds)
        # metrics.json first: a report that fails (full disk, a figure) loses no metric.
        run.write_metrics(summary)
        report_path = write_outputs(cfg, run, data, trainer, test, summary)
        guard.check()
    seconds = time.perf_counter() - started
    summary["total_seconds"] = seconds
    run.write_metrics(summary)
    dctx.close()
    return RunResult(
        run.path, test.metrics, test.baseline, trainer.history, report_path, seconds,
        data.dataset, len(data.y_test), summary=summary,
    )  # fmt: skip
