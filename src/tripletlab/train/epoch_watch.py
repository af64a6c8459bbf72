"""What the trainer watches at the end of an epoch: collapse, and the best epoch / early stop.

:func:`watch_epoch` takes the epoch's record (after validation) and its step records and

* feeds the steps to a :class:`~tripletlab.train.collapse.CollapseDetector`: an alarm is
  written into the epoch record (``"collapse"``: the alarm's fields) and the last step record
  (its one-line summary), and shown as a warning;
* feeds the record to an :class:`~tripletlab.train.early_stopping.EarlyStopping`: the best
  epoch so far goes into the record (``"best_epoch"``), ``save_best(record)`` is called when
  the monitored metric improved (the trainer writes ``best.pt``), and ``"early_stop": True``
  is set when the patience ran out.

Either watcher may be None (not watched).

Example:
    >>> from tripletlab.train.early_stopping import EarlyStopping
    >>> stopper = EarlyStopping("map_at_r", mode="max", patience=1)
    >>> saved = []
    >>> for epoch, value in enumerate([0.5, 0.7, 0.6], start=1):
    ...     record = {"epoch": epoch, "val_map_at_r": value}
    ...     watch_epoch(record, [], stopper=stopper, save_best=saved.append)
    >>> [r["epoch"] for r in saved], record["best_epoch"], record.get("early_stop")
    ([1, 2], 2, True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tripletlab.train.collapse import CollapseDetector
    from tripletlab.train.early_stopping import EarlyStopping

__all__ = ["watch_epoch"]

Record = dict[str, Any]


def watch_epoch(
    record: Record,
    step_records: list[Record],
    *,
    collapse: CollapseDetector | None = None,
    stopper: EarlyStopping | None = None,
    warn: Callable[[str], object] = lambda message: None,
    save_best: Callable[[Record], object] = lambda record: None,
) -> None:
    """The collapse alarm and the best checkpoint / early stop of one epoch's record.

    Args:
        record: the epoch record; updated in place.
        step_records: the epoch's step records; the last one gets a collapse summary.
        collapse: the collapse detector (None: not watched).
        stopper: the early-stopping rule (None: not watched).
        warn: shows a collapse alarm (e.g. :meth:`Progress.warn`).
        save_best: called with ``record`` when it is the new best epoch.
    """
    if collapse is not None:
        _watch_collapse(record, step_records, collapse, warn)
    if stopper is not None:
        _watch_early_stopping(record, stopper, save_best)


def _watch_collapse(
    record: Record,
    step_records: list[Record],
    collapse: CollapseDetector,
    warn: Callable[[str], object],
) -> None:
    alarm = collapse.update_many(step_records)
    if alarm is None:
        return
    record["collapse"] = alarm.as_dict()
    if step_records:
        step_records[-1]["collapse"] = alarm.summary()
    warn(alarm.message())


def _watch_early_stopping(
    record: Record, stopper: EarlyStopping, save_best: Callable[[Record], object]
) -> None:
    decision = stopper.update(record)
    if decision.best_epoch is not None:
        record["best_epoch"] = decision.best_epoch
    if decision.improved:
        save_best(record)
    if decision.stop:
        record["early_stop"] = True
