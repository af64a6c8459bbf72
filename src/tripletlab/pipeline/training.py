"""The ``train`` verb: :func:`run_training`, from data to report.

Steps, each a function of its own module: resolve the config (a resumed run keeps the one it
started with) → :func:`~tripletlab.pipeline.run_parts.build` the network, loss, optimiser and
schedule → :func:`~tripletlab.pipeline.run_fit.fit` them with the
:class:`~tripletlab.train.trainer.Trainer` (validation retrieval metrics every epoch, a
checkpoint every epoch) → :func:`~tripletlab.pipeline.final_evaluation.evaluate_test`: the
test split's embeddings *and the raw input features* with the same metrics (the baseline:
what training bought) → :func:`~tripletlab.pipeline.run_outputs.write_outputs`:
``metrics.json``, the test embeddings and the report. Where each file goes is
:class:`~tripletlab.pipeline.run_dir.RunDir`'s business.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tripletlab.atomic import remove_stale_temps
from tripletlab.errors import ConfigError
from tripletlab.pipeline.config import RunConfig
from tripletlab.pipeline.data import PreparedData, prepare_data
from tripletlab.pipeline.devices import resolve_device
from tripletlab.pipeline.final_evaluation import TestEvaluation, evaluate_test
from tripletlab.pipeline.interrupts import InterruptGuard
from tripletlab.pipeline.provenance import provenance
from tripletlab.pipeline.resume import check_same_data
from tripletlab.pipeline.run_checks import (
    check_memory,
    prepared_fingerprint,
    resume_state,
    run_threads,
)
from tripletlab.pipeline.run_dir import RunDir
from tripletlab.pipeline.run_fit import fit
from tripletlab.pipeline.run_lock import RunLock
from tripletlab.pipeline.run_outcome import load_best, training_outcome
from tripletlab.pipeline.run_outputs import run_summary, write_outputs
from tripletlab.pipeline.run_parts import RunParts, build
from tripletlab.pipeline.run_result import KEY_METRICS, RunResult
from tripletlab.pipeline.run_setup import make_progress, run_path
from tripletlab.train.distributed_training import DistributedContext, distributed_context
from tripletlab.train.progress import Progress
from tripletlab.train.run_status import RunStatus, claim_run_dir, read_status
from tripletlab.train.threads import torch_threads
from tripletlab.train.trainer import Trainer

# The steps' names are importable from here, where they were written first.
__all__ = [
    "KEY_METRICS",
    "RunParts",
    "RunResult",
    "TestEvaluation",
    "build",
    "evaluate_test",
    "fit",
    "run_training",
    "write_outputs",
]


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
    """The run inside its locked directory: config, data, training, then (rank 0) the test
    evaluation, ``metrics.json`` and the report."""
    started = time.perf_counter()
    dctx = steps.dctx
    saved_fingerprint = None
    if resume:
        cfg, saved_fingerprint = resume_state(cfg, run, extend)
    if cfg.name is None:
        cfg = cfg.model_copy(update={"name": run.path.name})
    with torch_threads(run_threads(cfg)):
        torch.manual_seed(cfg.seed)
        data = _load(cfg, run, steps, saved_fingerprint, resume)
        parts = build(cfg, data)
        trainer, train_seconds = fit(
            cfg, run, data, parts, dctx, resume, steps.progress, steps.device
        )
        steps.guard.check()
        if not dctx.is_main:  # the other ranks are done; rank 0 evaluates and reports
            dctx.close()
            seconds = time.perf_counter() - started
            return RunResult(
                run.path, {}, {}, trainer.history, None, seconds,
                data.dataset, len(data.y_test), rank=dctx.rank,
            )  # fmt: skip
        best_epoch = load_best(trainer, run)
        test, summary, report_path = _evaluate_and_report(
            cfg, run, data, trainer, steps, train_seconds=train_seconds, best_epoch=best_epoch
        )
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


def _load(
    cfg: RunConfig, run: RunDir, steps: _RunSteps, saved_fingerprint: Any, resume: bool
) -> PreparedData:
    """The run's data (checked against the memory and, on resume, against the run's data);
    rank 0 writes the config; the training phase is announced."""
    dctx, progress = steps.dctx, steps.progress
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
    return data


def _evaluate_and_report(
    cfg: RunConfig,
    run: RunDir,
    data: PreparedData,
    trainer: Trainer,
    steps: _RunSteps,
    *,
    train_seconds: float,
    best_epoch: int | None,
) -> tuple[TestEvaluation, dict[str, Any], Path | None]:
    """Rank 0 after training: the test evaluation, ``metrics.json`` (written before the
    report, so a report that fails — a full disk, a figure — loses no metric) and the report.
    ``best_epoch`` (None without ``best.pt``) goes into the summary with the rest of the
    training outcome."""
    steps.progress.phase("evaluating", "test split + raw baseline")
    test = evaluate_test(cfg, data, trainer)
    steps.guard.check()
    summary = run_summary(cfg, data, trainer, test, train_seconds) | training_outcome(
        trainer, best_epoch
    )
    summary["provenance"] = provenance(
        cfg,
        world_size=steps.dctx.world_size if steps.dctx.enabled else 1,
        verification_threshold=test.metrics.get("verification_threshold"),
    )
    run.write_metrics(summary)
    steps.progress.phase("writing the report", str(run.path))
    report_path = write_outputs(cfg, run, data, trainer, test, summary)
    steps.guard.check()
    return test, summary, report_path


def _prepare(cfg: RunConfig) -> PreparedData:
    """In-memory tensors, or datasets that stream (:mod:`~tripletlab.pipeline.images`)."""
    from tripletlab.pipeline.images import prepare_stream, should_stream

    return prepare_stream(cfg) if should_stream(cfg) else prepare_data(cfg)
