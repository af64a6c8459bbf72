"""The steps of one training epoch: gradient-accumulation groups, and what the steps log.

:func:`accumulation_step` says, for each batch of an epoch, whether it zeroes the gradients,
whether it steps the optimiser and how its loss is scaled, when the gradients of
``accumulate_batches`` batches are summed before one optimiser step.

:class:`EpochSteps` collects each step's loss (a tensor: the hot loop never calls
``.item()``), the loss's statistics and the learning rate; at the end of the epoch the losses
are moved to the host in one transfer and turned into

* step records ``{"epoch", "step", "loss", "lr", **stats}`` (``steps.jsonl``), and
* the epoch record ``{"epoch", "step", "loss", "lr", "epoch_seconds"}`` plus the mean of each
  triplet fraction the loss reported (``epochs.jsonl``, ``Trainer.history``).

Example:
    >>> [accumulation_step(i, total=3, group=2) for i in range(3)]
    [(True, False, 0.5), (False, True, 0.5), (True, True, 1.0)]
    >>> import torch
    >>> from tripletlab.nn.loss_base import NoStats
    >>> steps = EpochSteps()
    >>> steps.add(torch.tensor(1.0), NoStats(), lr=0.1)
    >>> steps.add(torch.tensor(3.0), NoStats(), lr=0.1)
    >>> records, record = steps.records(epoch=1, last_step=2, seconds=0.5, current_lr=0.1)
    >>> [(r["step"], r["loss"]) for r in records]
    [(1, 1.0), (2, 3.0)]
    >>> record["loss"], record["lr"], record["epoch_seconds"]
    (2.0, 0.1, 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tripletlab.nn.loss_base import LossStats

__all__ = ["TRIPLET_FRACTIONS", "EpochSteps", "accumulation_step"]

#: Step statistics averaged into the epoch record (when the loss reports them).
TRIPLET_FRACTIONS = ("active_fraction", "easy_fraction", "semi_hard_fraction", "hard_fraction")


def accumulation_step(i: int, total: int, group: int) -> tuple[bool, bool, float]:
    """``(zero_grad, step, loss_scale)`` for batch ``i`` of an epoch of ``total`` batches
    whose gradients are summed in groups of ``group``: a group's first batch zeroes the
    gradients, its last steps the optimiser, and each loss is divided by the group's size
    (the epoch's last group may be shorter, so its mean gradient is still a mean)."""
    group_start = i - i % group
    group_size = min(group, total - group_start)
    return i == group_start, i == group_start + group_size - 1, 1.0 / group_size


@dataclass
class EpochSteps:
    """The steps of one epoch, in order: detached losses, loss statistics, learning rates."""

    losses: list[Tensor] = field(default_factory=list)
    stats: list[LossStats] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.losses)

    def add(self, loss: Tensor, stats: LossStats, lr: float) -> None:
        """One step's detached loss, statistics and learning rate."""
        self.losses.append(loss)
        self.stats.append(stats)
        self.lrs.append(lr)

    def records(
        self, *, epoch: int, last_step: int, seconds: float, current_lr: float
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The step records and the epoch record.

        Args:
            epoch: the epoch these steps belong to.
            last_step: the global step counter after the epoch's last step.
            seconds: the epoch's training time.
            current_lr: the optimiser's learning rate now (the epoch record's ``lr`` when the
                epoch had no step; otherwise the last step's).
        """
        loss_values = self._loss_values()
        first_step = last_step - len(loss_values) + 1
        steps = [
            {"epoch": epoch, "step": first_step + i, "loss": loss, "lr": lr} | stats.as_dict()
            for i, (loss, lr, stats) in enumerate(
                zip(loss_values, self.lrs, self.stats, strict=True)
            )
        ]
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": last_step,
            "loss": float(np.mean(loss_values)) if loss_values else 0.0,
            "lr": self.lrs[-1] if self.lrs else current_lr,
            "epoch_seconds": seconds,
        }
        for key in TRIPLET_FRACTIONS:
            values = [r[key] for r in steps if key in r]
            if values:
                record[key] = float(np.mean(values))
        return steps, record

    def _loss_values(self) -> list[float]:
        if not self.losses:
            return []
        values: list[float] = torch.stack(self.losses).tolist()  # one device→host transfer
        return values
