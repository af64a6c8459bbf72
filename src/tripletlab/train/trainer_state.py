"""A trainer's resumable state: what its checkpoints hold, and how they are written and read.

:class:`TrainerCheckpoints` is the part of :class:`~tripletlab.train.trainer.Trainer` that
is a checkpoint. Its state dict holds the epoch and step counters, the model, optimiser and
scheduler state dicts, the torch / numpy / Python RNG states, the epoch history, the run
config and the seed — plus the GradScaler's, the collapse detector's and the early stopper's
state when the trainer has them. Tensors and primitives only, so
``torch.load(..., weights_only=True)`` reads it back (:mod:`tripletlab.train.checkpoint`
writes it atomically).

A trainer that resumes from such a file continues exactly where the run stopped: the P×K
sampler is re-seeded from the epoch, so epoch, weights, optimiser and RNG states are all of
its state.

Example:
    >>> import tempfile, torch
    >>> from tripletlab.train.checkpoint import load_checkpoint
    >>> from tripletlab.train.trainer import Trainer
    >>> model = torch.nn.Linear(3, 2)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> trainer = Trainer(model, lambda e, y: e.sum() * 0, optimizer, progress=False,
    ...                   checkpoint_dir=tempfile.mkdtemp())
    >>> trainer.epoch = 3
    >>> path = trainer.save()
    >>> path.name, sorted(trainer.state_dict())[:3]
    ('last.pt', ['config', 'epoch', 'global_step'])
    >>> fresh = Trainer(torch.nn.Linear(3, 2), lambda e, y: e.sum() * 0,
    ...                 torch.optim.SGD(model.parameters(), lr=0.1), progress=False)
    >>> fresh.load_state_dict(load_checkpoint(path)); fresh.epoch
    3
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from tripletlab.atomic import remove_stale_temps
from tripletlab.train.checkpoint import (
    TRAINER_KEYS,
    capture_rng_state,
    check_fits,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)

if TYPE_CHECKING:
    from tripletlab.train.collapse import CollapseDetector
    from tripletlab.train.early_stopping import EarlyStopping
    from tripletlab.train.logging import RunLogger

__all__ = ["TrainerCheckpoints"]


class TrainerCheckpoints:
    """State dict, save and resume of a trainer (a mixin: the trainer sets the attributes
    annotated below)."""

    #: Checkpoint files in ``checkpoint_dir``: the latest epoch's, the finished run's, and
    #: the best epoch's (with early stopping).
    LAST_CHECKPOINT = "last.pt"
    FINAL_CHECKPOINT = "final.pt"
    BEST_CHECKPOINT = "best.pt"

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    scaler: torch.amp.GradScaler | None
    collapse: CollapseDetector | None
    stopper: EarlyStopping | None
    checkpoint_dir: Path | None
    logger: RunLogger | None
    device: torch.device
    config: dict[str, Any]
    seed: int
    epoch: int
    global_step: int
    history: list[dict[str, Any]]

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (tensors and primitives only)."""
        return (
            {
                "epoch": self.epoch,
                "global_step": self.global_step,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "rng": capture_rng_state(),
                "history": self.history,
                "config": self.config,
                "seed": self.seed,
            }
            | ({"scaler": self.scaler.state_dict()} if self.scaler is not None else {})
            | ({"collapse": self.collapse.state_dict()} if self.collapse is not None else {})
            | ({"early_stopping": self.stopper.state_dict()} if self.stopper is not None else {})
        )

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` stored."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.history = list(state.get("history", []))
        if self.collapse is not None and state.get("collapse") is not None:
            self.collapse.load_state_dict(state["collapse"])
        if self.stopper is not None and state.get("early_stopping") is not None:
            self.stopper.load_state_dict(state["early_stopping"])

    def save(self, name: str = LAST_CHECKPOINT) -> Path | None:
        """Atomically write a checkpoint into ``checkpoint_dir`` (None when there is none)."""
        if self.checkpoint_dir is None:
            return None
        return save_checkpoint(self.checkpoint_dir / name, self.state_dict())

    def _start_run(self, resume_from: str | Path | None) -> None:
        """The start of ``fit``: a resumed run's state and truncated logs, or a fresh run's
        seeds (torch and numpy's global RNG, which user code may use) and empty logs."""
        if self.checkpoint_dir is not None:
            remove_stale_temps(self.checkpoint_dir)  # a killed writer's; never a checkpoint
        if resume_from is not None:
            self._restore_from(resume_from)
            if self.logger is not None:
                self.logger.truncate(self.epoch)
            return
        torch.manual_seed(self.seed)
        np.random.seed(self.seed % 2**32)  # noqa: NPY002 - seeds the global RNG user code may use
        if self.logger is not None:
            self.logger.reset()

    def _restore_from(self, path: str | Path) -> None:
        """Load a checkpoint written by a trainer (on ``device``) and restore its state.

        Raises:
            CheckpointError: the file is not such a checkpoint, or does not fit this
                trainer's model / optimiser (one line naming the file).
        """
        state = load_checkpoint(path, map_location=self.device, required=TRAINER_KEYS)
        check_fits(path, self.load_state_dict, state)

    def _save_with_record(self, name: str, record: dict[str, Any]) -> Path | None:
        """:meth:`save` with ``record`` counted in the history (``best.pt`` is written before
        the epoch's record joins ``history``, and must hold it)."""
        self.history.append(record)
        try:
            return self.save(name)
        finally:
            self.history.pop()
