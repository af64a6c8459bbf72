"""Best-checkpoint tracking and early stopping on a validation metric.

After each epoch the trainer hands its epoch record to :meth:`EarlyStopping.update`, which
answers with a :class:`StopDecision`: whether this epoch is the best so far (write
``best.pt``) and whether to stop. An epoch *improves* when its monitored value beats the best
by more than ``min_delta`` (``value > best + min_delta`` in mode ``max``, ``value < best −
min_delta`` in mode ``min``); after ``patience`` evaluated epochs without improvement the run
stops (``patience=None``: never stop, only track the best). Epochs without a validation pass
(``validate_every > 1``) neither improve nor use up patience; a NaN value never improves.

The state (best value and epoch, epochs since the best) is a dict of primitives for the
checkpoint, so a resumed run keeps its best and its patience count.

Reference: Prechelt, "Early Stopping — But When?", in Neural Networks: Tricks of the Trade,
1998 (patience-based stopping on a validation criterion).

Example:
    >>> stopper = EarlyStopping("map_at_r", mode="max", patience=2)
    >>> [stopper.update({"epoch": e, "val_map_at_r": v}).improved
    ...  for e, v in enumerate([0.5, 0.7, 0.69, 0.71], 1)]
    [True, True, False, True]
    >>> stopper.best_epoch, stopper.update({"epoch": 5, "val_map_at_r": 0.6}).stop
    (4, False)
    >>> stopper.update({"epoch": 6, "val_map_at_r": 0.6}).stop
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tripletlab.errors import ConfigError

__all__ = ["MODES", "EarlyStopping", "StopDecision", "monitor_key"]

#: ``max``: larger is better (P@1, MAP@R); ``min``: smaller is better (a loss).
MODES = ("max", "min")
#: Epoch-record keys that are training values, not validation metrics.
_TRAIN_KEYS = frozenset({"loss", "lr", "active_fraction"})
_VAL_PREFIX = "val_"


def monitor_key(metric: str) -> str:
    """The epoch-record key of ``metric``: validation metrics get their ``val_`` prefix.

    Example:
        >>> monitor_key("precision_at_1"), monitor_key("val_map_at_r"), monitor_key("loss")
        ('val_precision_at_1', 'val_map_at_r', 'loss')
    """
    if metric.startswith(_VAL_PREFIX) or metric in _TRAIN_KEYS:
        return metric
    return _VAL_PREFIX + metric


@dataclass(frozen=True)
class StopDecision:
    """The verdict on one epoch.

    Fields:
        evaluated: the monitored value was in this epoch's record.
        improved: this epoch is the new best (save ``best.pt``).
        stop: patience is used up (end the run after this epoch).
        best_value, best_epoch: the best so far (None before the first evaluated epoch).
    """

    evaluated: bool
    improved: bool
    stop: bool
    best_value: float | None
    best_epoch: int | None


class EarlyStopping:
    """Tracks the best epoch of a monitored metric and decides when to stop.

    Args:
        monitor: the metric (``"map_at_r"``, ``"precision_at_1"``, … for validation metrics,
            ``"loss"`` for the training loss); see :func:`monitor_key`.
        mode: ``"max"`` or ``"min"``.
        patience: evaluated epochs without improvement before stopping (None: never stop).
        min_delta: the least change that counts as an improvement (≥ 0).
    """

    def __init__(
        self,
        monitor: str = "map_at_r",
        mode: str = "max",
        patience: int | None = None,
        min_delta: float = 0.0,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"early stopping mode must be one of {MODES}; got {mode!r}")
        if patience is not None and (isinstance(patience, bool) or patience < 1):
            raise ConfigError(f"patience must be a positive integer or None; got {patience!r}")
        if not min_delta >= 0:
            raise ConfigError(f"min_delta must be >= 0; got {min_delta!r}")
        self.monitor = monitor_key(monitor)
        self.mode = mode
        self.patience = patience
        self.min_delta = float(min_delta)
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.epochs_without_improvement = 0

    def _improves(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best_value is None:
            return True
        if self.mode == "max":
            return value > self.best_value + self.min_delta
        return value < self.best_value - self.min_delta

    def update(self, record: Mapping[str, Any]) -> StopDecision:
        """Judge one epoch record (needs ``epoch``; the monitored key when it was evaluated).

        Raises:
            ConfigError: the record has validation metrics but not the monitored one (a
                misspelt ``--monitor``), naming those it has.
        """
        epoch = int(record["epoch"])
        if self.monitor not in record or record[self.monitor] is None:
            present = sorted(k for k in record if k.startswith(_VAL_PREFIX))
            if present and self.monitor.startswith(_VAL_PREFIX):
                names = ", ".join(k[len(_VAL_PREFIX) :] for k in present)
                raise ConfigError(
                    f"--monitor {self.monitor[len(_VAL_PREFIX) :]!r} is not a validation "
                    f"metric of this run; it has: {names}"
                )
            return StopDecision(False, False, False, self.best_value, self.best_epoch)
        value = float(record[self.monitor])
        improved = self._improves(value)
        if improved:
            self.best_value, self.best_epoch = value, epoch
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        stop = self.patience is not None and self.epochs_without_improvement >= self.patience
        return StopDecision(True, improved, stop, self.best_value, self.best_epoch)

    def state_dict(self) -> dict[str, Any]:
        """Primitives for the checkpoint (``weights_only=True`` loads them)."""
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "epochs_without_improvement": self.epochs_without_improvement,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the best and the patience count; the monitored metric and mode must match
        (a resumed run that monitors something else starts its tracking afresh)."""
        if state.get("monitor") != self.monitor or state.get("mode") != self.mode:
            return
        best = state.get("best_value")
        self.best_value = None if best is None else float(best)
        epoch = state.get("best_epoch")
        self.best_epoch = None if epoch is None else int(epoch)
        self.epochs_without_improvement = int(state.get("epochs_without_improvement", 0))
