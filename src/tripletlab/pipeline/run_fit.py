"""The training step of the ``train`` verb: :func:`fit` the built parts with a trainer.

The trainer is the :class:`~tripletlab.train.trainer.Trainer` (online mining), its
distributed form under ``torchrun``, or the offline-mining trainer (``train.mining``); it
validates every ``eval.validate_every`` epochs on the validation split (rank 0), writes
checkpoints into the run directory holding what a later ``embed`` / ``evaluate`` / resume
needs, and logs on rank 0.

Example:
    >>> import tempfile
    >>> from tripletlab.pipeline.config import load_config
    >>> from tripletlab.pipeline.data import prepare_data
    >>> from tripletlab.pipeline.run_dir import RunDir
    >>> from tripletlab.pipeline.run_parts import build
    >>> from tripletlab.train.distributed_training import distributed_context
    >>> cfg = load_config(None, {"data.max_samples": 200, "train.epochs": 1,
    ...                          "train.progress": False, "train.steps_per_epoch": 2})
    >>> data = prepare_data(cfg)
    >>> run = RunDir(tempfile.mkdtemp()).create()
    >>> trainer, seconds = fit(cfg, run, data, build(cfg, data), distributed_context(), False)
    >>> trainer.global_step, (run.checkpoints_dir / "final.pt").is_file()
    (2, True)
"""

from __future__ import annotations

import time
from typing import Any

import torch

from tripletlab.errors import ConfigError
from tripletlab.pipeline.config import RunConfig
from tripletlab.pipeline.data import PreparedData
from tripletlab.pipeline.devices import resolve_device
from tripletlab.pipeline.evaluation import embedding_metrics
from tripletlab.pipeline.run_checks import data_streams, prepared_fingerprint
from tripletlab.pipeline.run_dir import RunDir
from tripletlab.pipeline.run_parts import RunParts
from tripletlab.pipeline.run_setup import (
    make_collapse_detector,
    make_progress,
    make_stopper,
    offline_trainer_options,
)
from tripletlab.train.distributed_training import DistributedContext
from tripletlab.train.progress import Progress
from tripletlab.train.trainer import Trainer

__all__ = ["fit"]


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


def _checkpoint_meta(cfg: RunConfig, data: PreparedData) -> dict[str, Any]:
    """The ``config`` of every checkpoint: what a later ``embed`` / ``evaluate`` needs to
    rebuild and feed the model, and what a resume checks it continues the same run on the
    same data with."""
    return {
        "run": cfg.to_dict(),
        "data_fingerprint": prepared_fingerprint(data),
        "in_shape": list(data.in_shape),
        "input_mean": data.input_mean,
        "input_std": data.input_std,
        "class_names": data.class_names,
        "streamed": data_streams(data),
    }


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
