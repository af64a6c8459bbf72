"""What a run trains: :func:`build` makes the network, loss, optimiser and learning-rate
schedule of a config (:class:`RunParts`).

Example:
    >>> from tripletlab.pipeline.config import load_config
    >>> from tripletlab.pipeline.data import prepare_data
    >>> cfg = load_config(None, {"data.max_samples": 200, "loss.name": "batch-hard"})
    >>> parts = build(cfg, prepare_data(cfg))
    >>> type(parts.loss).__name__, parts.backbone is None
    ('BatchHardTripletLoss', True)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tripletlab.nn.loss_base import BatchLoss
from tripletlab.pipeline.config import RunConfig
from tripletlab.pipeline.data import PreparedData
from tripletlab.pipeline.factories import build_loss
from tripletlab.pipeline.run_checks import data_streams
from tripletlab.pipeline.run_setup import make_optimizer, wrap_xbm
from tripletlab.pipeline.trained import build_run_model

__all__ = ["RunParts", "build"]


@dataclass
class RunParts:
    """What :func:`build` makes from the config."""

    model: nn.Module
    loss: BatchLoss
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    backbone: nn.Module | None = None  # image runs: frozen / slower-learning part


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
    """D of the model's (N, D) embeddings: its head's ``out_dim``, else one forward pass."""
    head = getattr(model, "head", None)
    if head is not None and hasattr(head, "out_dim"):
        return int(head.out_dim)
    with torch.no_grad():
        was = model.training
        model.eval()
        width = int(model(torch.zeros(2, *data.in_shape)).shape[1])
        model.train(was)
    return width
