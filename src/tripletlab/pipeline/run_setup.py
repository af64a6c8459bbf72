"""What a training run is set up with beyond the network and the loss (issues 11 and 12):
its directory (never clobbering another run), the device, the optimiser's parameter groups
and warm-up, cross-batch memory, the collapse alarm, best-checkpoint tracking / early
stopping, progress, and the trainer class of ``train.mining``.

Example:
    >>> from tripletlab.pipeline.config import load_config
    >>> cfg = load_config(None, {"loss.name": "batch-hard", "train.patience": 3})
    >>> stopper = make_stopper(cfg)
    >>> stopper.monitor, stopper.patience
    ('val_map_at_r', 3)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tripletlab.errors import ConfigError
from tripletlab.nn.loss_base import BatchLoss
from tripletlab.pipeline.config import RunConfig
from tripletlab.pipeline.factories import build_optimizer, build_warmup_scheduler
from tripletlab.train.collapse import CollapseDetector, likely_fixes
from tripletlab.train.early_stopping import EarlyStopping
from tripletlab.train.progress import Progress
from tripletlab.train.run_status import claim_run_dir, default_run_name, unique_run_dir

__all__ = [
    "OFFLINE_STRATEGIES",
    "RUNS_ROOT",
    "claim_run",
    "make_collapse_detector",
    "make_optimizer",
    "make_progress",
    "make_stopper",
    "offline_trainer_options",
    "wrap_xbm",
]

#: Where runs go without ``--out``.
RUNS_ROOT = "runs"

#: ``train.mining = offline``: the offline miner's strategy for each loss.
OFFLINE_STRATEGIES = {
    "batch-all": "all",
    "batch-hard": "hard",
    "semi-hard": "semi_hard",
    "contrastive": "semi_hard",
}


def claim_run(cfg: RunConfig, *, resume: bool = False, overwrite: bool = False) -> Path:
    """:func:`run_path`, claimed: an existing run is continued only with ``resume`` and
    replaced only with ``overwrite`` (:func:`~tripletlab.train.run_status.claim_run_dir`)."""
    return claim_run_dir(run_path(cfg, resume), resume=resume, overwrite=overwrite)


def run_path(cfg: RunConfig, resume: bool = False) -> Path:
    """The run directory: ``--out`` as given, else ``runs/<name>`` where the name defaults
    to dataset-model-loss-timestamp (with a ``-2``, ``-3`` … suffix when it exists)."""
    if cfg.out:
        path = Path(cfg.out)
    elif cfg.name:
        path = Path(RUNS_ROOT) / cfg.name
    elif resume:
        raise ConfigError("--resume needs --out RUN_DIR (the run to continue)")
    else:
        name = default_run_name(cfg.data.dataset, cfg.model.name, cfg.loss.name)
        path = unique_run_dir(RUNS_ROOT, name)
    return path


def make_optimizer(
    cfg: RunConfig, model: nn.Module, backbone: nn.Module | None
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """The optimiser over parameter groups (backbone at ``lr × backbone_lr_multiplier``;
    no weight decay on norms and biases) and the schedule after ``warmup_epochs``.

    Runs with a plain network and none of the fine-tuning options keep one group over all
    parameters, as before.
    """
    o = cfg.optim
    params: Any = model.parameters()
    if backbone is not None:
        from tripletlab.train.finetune import parameter_groups

        params = parameter_groups(
            model,
            lr=o.lr,
            weight_decay=o.weight_decay,
            backbone=backbone,
            backbone_lr_multiplier=o.backbone_lr_multiplier,
        )
    elif o.backbone_lr_multiplier != 1.0 or o.freeze_epochs:
        raise ConfigError(
            "optim.backbone_lr_multiplier / freeze_epochs need a model with a backbone "
            "(an image run: hf:, module:factory, or an image folder that streams)"
        )
    optimizer = build_optimizer(o.name, params, o.lr, o.weight_decay, o.momentum)
    scheduler = build_warmup_scheduler(
        o.scheduler,
        optimizer,
        cfg.train.epochs,
        warmup_epochs=o.warmup_epochs,
        step_size=o.step_size,
        gamma=o.gamma,
    )
    return optimizer, scheduler


def wrap_xbm(cfg: RunConfig, loss: BatchLoss, embedding_dim: int) -> BatchLoss:
    """``loss`` with a cross-batch memory of ``loss.xbm_size`` embeddings (Wang et al. 2020),
    or ``loss`` itself when the key is unset."""
    if cfg.loss.xbm_size is None:
        return loss
    from tripletlab.nn.xbm import XBMLoss

    wrapped: BatchLoss = XBMLoss(loss, cfg.loss.xbm_size, embedding_dim)
    return wrapped


def make_collapse_detector(cfg: RunConfig, loss: BatchLoss) -> CollapseDetector:
    """The collapse alarm of the run's loss (``train.stop_on_collapse`` stops the run).

    With cross-batch memory the loss value when collapsed moves as the memory fills, so
    only the "distances vanished" symptom is watched (docs/drafts/issue11_wiring.md §1).
    """
    fixes = likely_fixes(
        loss_name=cfg.loss.name,
        metric=cfg.loss.metric,
        smoothing=cfg.loss.smoothing,
        lr=cfg.optim.lr,
        batch_size=cfg.train.p * cfg.train.k,
    )
    stop = cfg.train.stop_on_collapse
    if cfg.loss.xbm_size is not None:
        return CollapseDetector(None, stop=stop, fixes=fixes)
    labels = torch.arange(cfg.train.p * cfg.train.k) % cfg.train.p
    return CollapseDetector.for_loss(loss, labels, stop=stop, fixes=fixes)


def make_stopper(cfg: RunConfig) -> EarlyStopping:
    """Best-epoch tracking on ``train.monitor`` (``best.pt``), stopping after ``patience``."""
    t = cfg.train
    return EarlyStopping(t.monitor, t.monitor_mode, t.patience, t.min_delta)


def make_progress(cfg: RunConfig, is_main: bool = True) -> Progress:
    """Progress on stderr: bars on a terminal, one flushed line per epoch and phase
    otherwise; silent on ranks other than 0 and with ``train.progress = false``."""
    return Progress(sys.stderr, enabled=cfg.train.progress and is_main)


def offline_trainer_options(cfg: RunConfig) -> dict[str, Any]:
    """Keyword arguments of :class:`~tripletlab.train.offline_mining.OfflineMiningTrainer`
    for ``train.mining = offline | alternate``."""
    from tripletlab.train.offline_mining import OfflineMiner

    miner = OfflineMiner(
        OFFLINE_STRATEGIES[cfg.loss.name], margin=cfg.loss.margin, metric=cfg.loss.metric
    )
    return {
        "miner": miner,
        "schedule": cfg.train.mining,
        "batch_triplets": cfg.train.p * cfg.train.k,
        "embed_batch_size": cfg.eval.batch_size,
        "embed_workers": cfg.train.workers,
    }
