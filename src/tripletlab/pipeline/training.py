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
from tripletlab.pipeline.devices import resolve_device
from tripletlab.pipeline.evaluation import embedding_metrics, unavailable_metrics
from tripletlab.pipeline.factories import build_loss
from tripletlab.pipeline.interrupts import InterruptGuard
from tripletlab.pipeline.provenance import provenance
from tripletlab.pipeline.resume import check_same_data
from tripletlab.pipeline.run_checks import (
    check_memory,
    data_streams,
    prepared_fingerprint,
    resume_state,
    run_threads,
)
from tripletlab.pipeline.run_dir import RunDir
from tripletlab.pipeline.run_lock import RunLock
from tripletlab.pipeline.run_outcome import load_best, training_outcome
from tripletlab.pipeline.run_setup import (
    make_collapse_detector,
    make_optimizer,
    make_progress,
    make_stopper,
    offline_trainer_options,
    run_path,
    wrap_xbm,
)
from tripletlab.pipeline.trained import build_run_model
from tripletlab.train.distributed_training import DistributedContext, distributed_context
from tripletlab.train.progress import Progress
from tripletlab.train.run_status import RunStatus, claim_run_dir, read_status
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
    backbone: nn.Module | None = None  # image runs: frozen / slower-learning part


@dataclass
class TestEvaluation:
    """The test split's embeddings, metrics and ROC curves, and the baseline's."""

    embeddings: torch.Tensor
    metrics: dict[str, float | None]
    verification: dict[str, Any] | None
    baseline: dict[str, float | None]
    baseline_verification: dict[str, Any] | None
    seconds: float


def build(cfg: RunConfig, data: PreparedData) -> RunParts:
    """The network, loss (with cross-batch memory when ``loss.xbm_size``), optimiser
    (parameter groups for image backbones) and learning-rate schedule (with warm-up)."""
    model = build_run_model(cfg, data.in_shape, streamed=data_streams(data))
    loss = build_loss(
        cfg.loss.name, cfg.loss.margin, cfg.loss.metric, cfg.loss.smoothing, cfg.loss.reduction
    )
    loss = wrap_xbm(cfg, loss, _embedding_width(model, data))
    backbone = getattr(model, "backbone", None) if data_streams(data) else None
    optimizer, scheduler = make_optimizer(cfg, model, backbone)
    return RunParts(model, loss, optimizer, scheduler, backbone)


def _embedding_width(model: nn.Module, data: PreparedData) -> int:
    head = getattr(model, "head", None)
    if head is not None and hasattr(head, "out_dim"):
        return int(head.out_dim)
    with torch.no_grad():
        was = model.training
        model.eval()
        width = int(model(torch.zeros(2, *data.in_shape)).shape[1])
        model.train(was)
    return width


def _checkpoint_meta(cfg: RunConfig, data: PreparedData) -> dict[str, Any]:
    # What a later `embed`/`evaluate` needs to rebuild and feed the model, and what a
    # resume checks it continues the same run on the same data.
    return {
        "run": cfg.to_dict(),
        "data_fingerprint": prepared_fingerprint(data),
        "in_shape": list(data.in_shape),
        "input_mean": data.input_mean,
        "input_std": data.input_std,
        "class_names": data.class_names,
        "streamed": data_streams(data),
    }


def fit(
    cfg: RunConfig,
    run: RunDir,
    data: PreparedData,
    parts: RunParts,
    dctx: DistributedContext,
    resume: bool,
    progress: Progress | None = None,
    device: torch.device | None = None,
) -> tuple[Trainer, float]:
    """Train (or continue training) the parts; returns the trainer and the training time."""

    def validate(trainer: Trainer) -> dict[str, float]:
        if len(data.y_val) < 2:
            return {}
        embeddings = trainer.embed(data.x_val, cfg.eval.batch_size)
        found = embedding_metrics(embeddings, data.y_val, cfg, full=False)[0]
        return {key: value for key, value in found.items() if value is not None}

    logger = run.logger() if dctx.is_main else None
    trainer_class, options, inputs = _trainer_choice(cfg, data, parts, dctx)
    try:
        trainer = trainer_class(
            parts.model,
            parts.loss,
            parts.optimizer,
            scheduler=parts.scheduler,
            normalize=cfg.model.normalize,
            grad_clip=cfg.optim.grad_clip,
            device=device if device is not None else resolve_device(cfg.train.device),
            logger=logger,
            validate=validate if dctx.is_main else None,
            validate_every=cfg.eval.validate_every,
            checkpoint_dir=run.checkpoints_dir,
            checkpoint_every=cfg.train.checkpoint_every,
            config=_checkpoint_meta(cfg, data),
            seed=cfg.seed,
            progress=progress if progress is not None else make_progress(cfg, dctx.is_main),
            kill_after_steps=cfg.train.kill_after_steps,
            **options,
        )
        started = time.perf_counter()
        t = cfg.train
        trainer.fit(
            inputs,
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


def _trainer_choice(
    cfg: RunConfig, data: PreparedData, parts: RunParts, dctx: DistributedContext
) -> tuple[type[Trainer], dict[str, Any], Any]:
    """The trainer class, its issue-11/12 options and the training inputs."""
    t = cfg.train
    options: dict[str, Any] = {
        "precision": t.precision,
        "accumulate_batches": t.accumulate_batches,
        "workers": t.workers,
        "collapse": make_collapse_detector(cfg, parts.loss),
        "stopper": make_stopper(cfg),
    }
    if parts.backbone is not None and cfg.optim.freeze_epochs:
        from tripletlab.train.finetune import FreezeBackbone

        options["epoch_start_hooks"] = [FreezeBackbone(parts.backbone, cfg.optim.freeze_epochs)]
    if t.mining == "online":
        return dctx.trainer_class, options, data.x_train
    if dctx.enabled:
        raise ConfigError(f"train.mining = {t.mining!r} is not available under torchrun")
    from tripletlab.train.offline_mining import OfflineMiningTrainer
    from tripletlab.train.streaming import LazyInputs

    inputs = data.x_train if not data_streams(data) else LazyInputs(data.x_train)  # type: ignore[arg-type]
    return OfflineMiningTrainer, options | offline_trainer_options(cfg), inputs


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


def run_training(
    cfg: RunConfig,
    resume: bool = False,
    *,
    extend: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> RunResult:
    """Train, evaluate against the raw-feature baseline and write the report.

    The run directory is locked for the whole run (a second process gets a one-line
    :class:`~tripletlab.pipeline.run_lock.RunLockedError`); Ctrl-C stops the run wherever it
    is (``KeyboardInterrupt``) and leaves its last checkpoint to resume from.

    Args:
        cfg: the resolved run configuration.
        resume: continue from the run directory's last checkpoint (ConfigError if missing,
            or if ``cfg`` sets a value or the data differ from the run's).
        extend: with ``resume``, allow a larger ``train.epochs`` than the run started with.
        overwrite: replace an existing run in the directory (otherwise RunExistsError).
        progress: where phases and epochs are shown (default: stderr, see
            :func:`~tripletlab.pipeline.run_setup.make_progress`).

    Returns:
        A :class:`RunResult` with the test metrics, the baseline and the report path.
    """
    device = resolve_device(cfg.train.device)  # first: a missing GPU is one line, at once
    dctx = distributed_context()
    progress = progress if progress is not None else make_progress(cfg, dctx.is_main)
    if dctx.enabled and not (cfg.out or cfg.name):  # every rank must agree on the directory
        raise ConfigError("under torchrun give the run a directory: --out RUN_DIR or --name")
    path = run_path(cfg, resume) if dctx.is_main else cfg.out_dir
    if Path(path).exists() and not Path(path).is_dir():
        raise ConfigError(f"run directory {path} is not a directory (it is a file)")
    # The lock first: a second process is told who holds the directory, not that it is taken.
    lock = RunLock(path) if dctx.is_main else contextlib.nullcontext()
    with lock, InterruptGuard() as guard:
        if dctx.is_main:
            claim_run_dir(path, resume=resume, overwrite=overwrite)
        run = RunDir(path).create()
        if resume:
            state = read_status(run.path).get("state")
            if state in ("failed", "killed"):
                progress.warn(f"{run.path} {state} before; resuming from its last checkpoint")
        if dctx.is_main:  # under the lock no one else writes here: a killed writer's temps
            remove_stale_temps(run.path)
        status = RunStatus(run.path) if dctx.is_main else contextlib.nullcontext()
        with status as run_status:
            steps = _RunSteps(dctx, guard, progress, device, run_status)
            return _run(cfg, run, steps, resume, extend)


@dataclass
class _RunSteps:
    """What the steps of one run share: processes, Ctrl-C guard, progress, device, status."""

    dctx: DistributedContext
    guard: InterruptGuard
    progress: Progress
    device: torch.device
    status: RunStatus | None


def _run(cfg: RunConfig, run: RunDir, steps: _RunSteps, resume: bool, extend: bool) -> RunResult:
    started = time.perf_counter()
    dctx, guard, progress = steps.dctx, steps.guard, steps.progress
    saved_fingerprint = None
    if resume:
        cfg, saved_fingerprint = resume_state(cfg, run, extend)
    if cfg.name is None:
        cfg = cfg.model_copy(update={"name": run.path.name})
    with torch_threads(run_threads(cfg)):
        torch.manual_seed(cfg.seed)
        progress.phase("loading", cfg.data.dataset)
        data = _prepare(cfg)
        check_memory(cfg, data)
        if resume:
            check_same_data(saved_fingerprint, prepared_fingerprint(data), data.dataset)
        if dctx.is_main:
            run.write_config(cfg.to_dict())
        world = f", world size {dctx.world_size}" if dctx.enabled else ""
        progress.phase(
            "training", f"{cfg.train.epochs} epochs, P×K = {cfg.train.p}×{cfg.train.k}{world}"
        )
        parts = build(cfg, data)
        trainer, train_seconds = fit(cfg, run, data, parts, dctx, resume, progress, steps.device)
        guard.check()
        if not dctx.is_main:  # the other ranks are done; rank 0 evaluates and reports
            dctx.close()
            seconds = time.perf_counter() - started
            return RunResult(
                run.path, {}, {}, trainer.history, None, seconds,
                data.dataset, len(data.y_test), rank=dctx.rank,
            )  # fmt: skip
        best_epoch = load_best(trainer, run)
        progress.phase("evaluating", "test split + raw baseline")
        test = evaluate_test(cfg, data, trainer)
        guard.check()
        summary = _summary(cfg, data, trainer, test, train_seconds) | training_outcome(
            trainer, best_epoch
        )
        summary["provenance"] = provenance(
            cfg,
            world_size=dctx.world_size if dctx.enabled else 1,
            verification_threshold=test.metrics.get("verification_threshold"),
        )
        # metrics.json first: a report that fails (full disk, a figure) loses no metric.
        run.write_metrics(summary)
        progress.phase("writing the report", str(run.path))
        report_path = write_outputs(cfg, run, data, trainer, test, summary)
        guard.check()
    seconds = time.perf_counter() - started
    summary["total_seconds"] = seconds
    summary["provenance"]["wall_seconds"] = seconds
    run.write_metrics(summary)
    if steps.status is not None:
        steps.status.update(best_epoch=best_epoch, collapse=summary["collapse"])
    dctx.close()
    return RunResult(
        run.path, test.metrics, test.baseline, trainer.history, report_path, seconds,
        data.dataset, len(data.y_test), summary=summary,
    )  # fmt: skip


def _prepare(cfg: RunConfig) -> PreparedData:
    """In-memory tensors, or datasets that stream (:mod:`~tripletlab.pipeline.images`)."""
    from tripletlab.pipeline.images import prepare_stream, should_stream

    return prepare_stream(cfg) if should_stream(cfg) else prepare_data(cfg)
