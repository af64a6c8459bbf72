"""What training left besides its history: the best validated epoch's weights
(``best.pt``) and the outcome recorded in ``metrics.json`` (best epoch, early stop, collapse).
"""

from __future__ import annotations

from typing import Any

from tripletlab.pipeline.run_dir import RunDir
from tripletlab.train.checkpoint import load_checkpoint
from tripletlab.train.trainer import Trainer

__all__ = ["load_best", "training_outcome"]


def load_best(trainer: Trainer, run: RunDir) -> int | None:
    """Put the best validated epoch's weights (``best.pt``) into the trainer's model;
    returns that epoch (None when the run has no best checkpoint)."""
    path = run.checkpoints_dir / Trainer.BEST_CHECKPOINT
    if not path.is_file():
        return None
    state = load_checkpoint(path, map_location=trainer.device)
    trainer.model.load_state_dict(state["model"])
    return int(state["epoch"])


def training_outcome(trainer: Trainer, best_epoch: int | None) -> dict[str, Any]:
    """What training did beyond its metrics: best epoch, early stop, collapse alarm."""
    history = trainer.history
    alarms = [h["collapse"] for h in history if "collapse" in h]
    stopper = getattr(trainer, "stopper", None)
    return {
        "best_epoch": best_epoch,
        "best_value": None if stopper is None else stopper.best_value,
        "monitor": None if stopper is None else stopper.monitor,
        "evaluated_checkpoint": Trainer.BEST_CHECKPOINT if best_epoch else "final",
        "stopped_early": bool(history and history[-1].get("early_stop")),
        "collapse": alarms[0] if alarms else None,
    }
