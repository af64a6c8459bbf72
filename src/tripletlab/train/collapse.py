"""Embedding collapse: notice it while training, say what to change, optionally stop.

The best-known failure of the triplet loss is *collapse*: every embedding falls onto one point,
d_ap = d_an = 0, and each triplet's loss sits at its value for coinciding points — ``h(m)``,
the margin for the hinge — with every triplet active. The gradient of ``d_ap − d_an`` is then
(near) zero and training never leaves that point. Batch-hard mining with squared distances
and a high learning rate is the classic trigger; Hermans et al. (2017) avoid it with plain
Euclidean distances and the soft margin.

:class:`CollapseDetector` is fed, per optimiser step, the statistics the losses already return
(``TripletStats.as_dict()`` or the contrastive loss's dict, plus the loss value) and raises
an alarm on either symptom, held for ``window`` consecutive steps:

* **distances vanished**: the mean anchor–negative distance ``mean_d_an`` has fallen below
  ``distance_ratio`` × its value over the first ``reference_steps`` steps (and ``mean_d_ap``
  with it). Healthy training shrinks d_ap but keeps d_an.
* **loss pinned at the collapse value**: the active fraction is at least the collapsed
  batch's (1 for the triplet losses) and the loss is within ``loss_tolerance`` (relative) of
  the value the loss takes when all embeddings coincide, and — when the loss reports
  distances — d_an is below ``pinned_distance_ratio`` × its start (a smooth loss such as the
  soft margin sits near its collapse value, ln 2, whenever d_ap ≈ d_an, which early training
  with large distances is not a collapse). That value is measured once by
  :func:`collapsed_loss_value` — the loss of one P×K batch of identical embeddings — so it is
  right for any loss, reduction, margin and smoothing.
* a non-finite loss is an alarm at once.

The alarm (:class:`CollapseAlarm`) names the symptom, the step, the numbers, and the likely
fixes for this run's settings; with ``stop=True`` :attr:`CollapseDetector.should_stop` turns
True and :meth:`CollapseDetector.raise_if_stopping` raises :class:`TrainingCollapsed`.

Reference: Hermans, Beyer & Leibe, "In Defense of the Triplet Loss for Person
Re-Identification", 2017, §2 and appendix (collapse with batch-hard; soft margin, Euclidean
distance); Schroff et al., "FaceNet", 2015, §3.2 (hardest negatives lead to a collapsed model).

Example:
    >>> detector = CollapseDetector(collapsed_loss=0.2, window=3, reference_steps=2)
    >>> for step in range(6):
    ...     alarm = detector.update({"loss": 0.5, "active_fraction": 1.0,
    ...                              "mean_d_ap": 1e-4, "mean_d_an": 1e-4 if step > 1 else 1.0})
    >>> detector.alarm.kind, detector.alarm.step
    ('distances_vanished', 5)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from tripletlab.errors import TripletlabError

__all__ = [
    "ALARM_KINDS",
    "CollapseAlarm",
    "CollapseDetector",
    "TrainingCollapsed",
    "collapsed_loss_value",
    "likely_fixes",
]

#: The symptoms :class:`CollapseDetector` reports.
ALARM_KINDS = ("distances_vanished", "loss_at_collapse_value", "non_finite_loss")

#: Consecutive steps a symptom must last: a few noisy batches are not a collapse, and the
#: collapse reported in issue 11 happened within 20 steps.
DEFAULT_WINDOW = 20
#: d_an below 5% of its starting value: healthy runs on normalised embeddings keep d_an near
#: its start (it is what the loss pushes up), collapsed ones reach 1e-3 or less.
DEFAULT_DISTANCE_RATIO = 0.05
#: Steps averaged for the reference distances (the untrained network's scale).
DEFAULT_REFERENCE_STEPS = 5
#: With distances known, "pinned" also needs d_an below this fraction of its start (a healthy
#: soft-margin batch-hard run on digits went down to 0.53, collapsed ones below 0.01).
DEFAULT_PINNED_DISTANCE_RATIO = 0.2
#: Relative distance of the loss to its collapse value still counted as "at" it: collapsed
#: hinge runs sit within 0.1% of the margin; a healthy soft-margin batch-hard run on digits
#: wanders within ±4% of ln 2 and must not count.
DEFAULT_LOSS_TOLERANCE = 0.01
#: Slack on the active fraction (float averages of all-active batches).
_ACTIVE_SLACK = 0.01
#: Distances below this have no scale to compare against (an all-zero start).
_TINY = 1e-12


class TrainingCollapsed(TripletlabError, RuntimeError):
    """Training stopped because the embeddings collapsed (``--stop-on-collapse``)."""

    def __init__(self, alarm: CollapseAlarm) -> None:
        super().__init__(alarm.summary())
        self.alarm = alarm


@dataclass(frozen=True)
class CollapseAlarm:
    """What the detector saw: the symptom, when, the numbers, and what to change.

    Fields:
        kind: one of :data:`ALARM_KINDS`.
        step: the (1-based) step of the update that raised it.
        loss, active_fraction, mean_d_ap, mean_d_an: that step's values (None if absent).
        reference_d_ap, reference_d_an: the starting distances (None if not measured).
        collapsed_loss: the loss value of coinciding embeddings (None if unknown).
        fixes: likely fixes, most likely first.
    """

    kind: str
    step: int
    loss: float
    active_fraction: float | None
    mean_d_ap: float | None
    mean_d_an: float | None
    reference_d_ap: float | None
    reference_d_an: float | None
    collapsed_loss: float | None
    fixes: tuple[str, ...] = field(default=())

    def summary(self) -> str:
        """One line: the symptom and its numbers."""
        if self.kind == "non_finite_loss":
            what = f"the loss is {self.loss} at step {self.step}"
        elif self.kind == "distances_vanished":
            what = (
                f"mean d_an fell to {self.mean_d_an:.3g} from {self.reference_d_an:.3g} "
                f"(d_ap {self.mean_d_ap:.3g} from {self.reference_d_ap:.3g}) by step {self.step}"
            )
        else:
            what = (
                f"the loss is stuck at {self.loss:.4g}, its value when all embeddings coincide "
                f"({self.collapsed_loss:.4g}), with active fraction "
                f"{self.active_fraction:.3f}, up to step {self.step}"
            )
        return f"embedding collapse: {what}"

    def message(self) -> str:
        """The summary and the likely fixes, one per line (for the screen, log and report)."""
        return "\n".join([self.summary(), *(f"  - try: {fix}" for fix in self.fixes)])

    def as_dict(self) -> dict[str, Any]:
        """JSON-compatible fields (for ``epochs.jsonl``, ``metrics.json``, the report)."""
        out = asdict(self)
        out["fixes"] = list(self.fixes)
        out["summary"] = self.summary()
        return out


def likely_fixes(
    *,
    loss_name: str | None = None,
    metric: str | None = None,
    smoothing: float | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
) -> tuple[str, ...]:
    """The changes that most often cure collapse, skipping those the run already uses.

    Example:
        >>> likely_fixes(loss_name="batch-hard", metric="euclidean", smoothing=1.0)[0]
        'a lower learning rate (e.g. a tenth: --lr)'
    """
    fixes = []
    if metric in (None, "sqeuclidean"):
        fixes.append("Euclidean, not squared, distances (--metric euclidean; Hermans et al.)")
    if loss_name != "contrastive" and not smoothing:
        fixes.append("the soft margin (--margin 0 --smoothing 1; Hermans et al.)")
    fixes.append(
        f"a lower learning rate (e.g. a tenth{f' of {lr:g}' if lr is not None else ''}: --lr)"
    )
    if loss_name in (None, "batch-hard"):
        fixes.append("gentler mining: --loss semi-hard or --loss batch-all")
    fixes.append(
        "a larger batch (more classes --p, samples per class --k"
        + (f"; now {batch_size}" if batch_size is not None else "")
        + ")"
    )
    return tuple(fixes)


def collapsed_loss_value(
    loss: Callable[..., Any], labels: Tensor, dim: int = 8
) -> tuple[float, float | None]:
    """The loss and active fraction of a batch whose embeddings all coincide.

    Calls ``loss(e, labels, return_stats=True)`` (falling back to ``loss(e, labels)``) on
    identical unit vectors e (B, ``dim``) — the collapsed state, whatever the loss, margin,
    smoothing or reduction.

    Returns:
        ``(loss value, active fraction or None when the loss has no stats)``.

    Example:
        >>> from tripletlab import BatchHardTripletLoss
        >>> value, active = collapsed_loss_value(BatchHardTripletLoss(margin=0.2),
        ...                                      torch.arange(8) % 2)
        >>> round(value, 6), active
        (0.2, 1.0)
    """
    embeddings = torch.zeros(len(labels), dim)
    embeddings[:, 0] = 1.0
    with torch.no_grad():
        try:
            output = loss(embeddings, labels, return_stats=True)
        except TypeError as exc:
            if "return_stats" not in str(exc):
                raise
            output = loss(embeddings, labels)
    value, stats = output if isinstance(output, tuple) else (output, None)
    active = None
    if stats is not None:
        raw = stats.as_dict() if hasattr(stats, "as_dict") else dict(stats)
        if "active_fraction" in raw:
            active = float(raw["active_fraction"])
    return float(value), active


def _value(record: Mapping[str, Any], key: str) -> float | None:
    value = record.get(key)
    if value is None:
        return None
    return float(value.item() if isinstance(value, Tensor) else value)


class CollapseDetector:
    """Watches per-step loss statistics for embedding collapse (see the module docstring).

    Args:
        collapsed_loss: the loss value when all embeddings coincide (see
            :func:`collapsed_loss_value`); None disables the "loss pinned" symptom.
        collapsed_active: the active fraction of that collapsed batch (default 1.0).
        window: consecutive steps a symptom must hold.
        distance_ratio: d_an (and d_ap) below this fraction of their reference = vanished.
        reference_steps: first steps averaged for the reference distances.
        loss_tolerance: relative tolerance of "the loss is at its collapse value".
        pinned_distance_ratio: with distances reported, "pinned" also needs d_an below this
            fraction of its reference.
        stop: request stopping once an alarm is raised (``--stop-on-collapse``).
        fixes: the fixes reported with an alarm (default: :func:`likely_fixes` ()).

    Feed :meth:`update` with one mapping per step holding ``loss`` and, when the loss returns
    them, ``active_fraction``, ``mean_d_ap``, ``mean_d_an`` (floats or 0-dim tensors). The
    first alarm is kept in :attr:`alarm`; later steps do not replace it.
    """

    def __init__(
        self,
        collapsed_loss: float | None = None,
        *,
        collapsed_active: float | None = 1.0,
        window: int = DEFAULT_WINDOW,
        distance_ratio: float = DEFAULT_DISTANCE_RATIO,
        reference_steps: int = DEFAULT_REFERENCE_STEPS,
        loss_tolerance: float = DEFAULT_LOSS_TOLERANCE,
        pinned_distance_ratio: float = DEFAULT_PINNED_DISTANCE_RATIO,
        stop: bool = False,
        fixes: Iterable[str] | None = None,
    ) -> None:
        if window < 1 or reference_steps < 1:
            raise ValueError("window and reference_steps must be >= 1")
        for name, ratio in (
            ("distance_ratio", distance_ratio),
            ("pinned_distance_ratio", pinned_distance_ratio),
        ):
            if not 0 < ratio <= 1:
                raise ValueError(f"{name} must be in (0, 1]; got {ratio!r}")
        if not loss_tolerance >= 0:
            raise ValueError(f"loss_tolerance must be >= 0; got {loss_tolerance!r}")
        self.collapsed_loss = collapsed_loss
        self.collapsed_active = 1.0 if collapsed_active is None else collapsed_active
        self.window = window
        self.distance_ratio = distance_ratio
        self.reference_steps = reference_steps
        self.loss_tolerance = loss_tolerance
        self.pinned_distance_ratio = pinned_distance_ratio
        self.stop = stop
        self.fixes = tuple(likely_fixes() if fixes is None else fixes)
        self.step = 0
        self.alarm: CollapseAlarm | None = None
        self._reference: list[tuple[float, float]] = []
        self._vanished_run = 0
        self._pinned_run = 0

    @classmethod
    def for_loss(cls, loss: Callable[..., Any], labels: Tensor, **kwargs: Any) -> CollapseDetector:
        """A detector whose collapse value is measured on ``loss`` with a batch's ``labels``."""
        value, active = collapsed_loss_value(loss, labels)
        return cls(value, collapsed_active=active, **kwargs)

    @property
    def should_stop(self) -> bool:
        """True once an alarm is raised and the detector was built with ``stop=True``."""
        return self.stop and self.alarm is not None

    def raise_if_stopping(self) -> None:
        """Raise :class:`TrainingCollapsed` when :attr:`should_stop`."""
        if self.should_stop:
            assert self.alarm is not None
            raise TrainingCollapsed(self.alarm)

    def update_many(self, records: Iterable[Mapping[str, Any]]) -> CollapseAlarm | None:
        """:meth:`update` on each record (e.g. an epoch's step records); the new alarm, if any."""
        before = self.alarm
        for record in records:
            self.update(record)
        return self.alarm if self.alarm is not before else None

    def update(self, record: Mapping[str, Any]) -> CollapseAlarm | None:
        """Take one step's statistics; returns the alarm raised at this step, else None."""
        self.step += 1
        loss = _value(record, "loss")
        if loss is None:
            raise KeyError("a collapse-detector record needs the step's 'loss'")
        if self.alarm is not None:
            return None
        active = _value(record, "active_fraction")
        d_ap, d_an = _value(record, "mean_d_ap"), _value(record, "mean_d_an")
        if not math.isfinite(loss):
            return self._raise("non_finite_loss", loss, active, d_ap, d_an)
        shrunk = True  # without distances, the loss and active fraction decide alone
        if d_ap is not None and d_an is not None:
            if self._track_distances(d_ap, d_an):
                return self._raise("distances_vanished", loss, active, d_ap, d_an)
            reference = self._reference_distances()
            shrunk = reference is not None and d_an < self.pinned_distance_ratio * reference[1]
        if self._track_pinned(loss, active, shrunk):
            return self._raise("loss_at_collapse_value", loss, active, d_ap, d_an)
        return None

    def _reference_distances(self) -> tuple[float, float] | None:
        if len(self._reference) < self.reference_steps:
            return None
        n = len(self._reference)
        return sum(r[0] for r in self._reference) / n, sum(r[1] for r in self._reference) / n

    def _track_distances(self, d_ap: float, d_an: float) -> bool:
        reference = self._reference_distances()
        if reference is None:
            self._reference.append((d_ap, d_an))
            return False
        ref_ap, ref_an = reference
        vanished = (
            ref_an > _TINY
            and d_an < self.distance_ratio * ref_an
            and d_ap <= max(self.distance_ratio * ref_ap, d_an)
        )
        self._vanished_run = self._vanished_run + 1 if vanished else 0
        return self._vanished_run >= self.window

    def _track_pinned(self, loss: float, active: float | None, shrunk: bool) -> bool:
        if self.collapsed_loss is None or active is None:
            return False
        scale = max(abs(self.collapsed_loss), _TINY)
        pinned = (
            shrunk
            and self.collapsed_loss > 0
            and active >= self.collapsed_active - _ACTIVE_SLACK
            and abs(loss - self.collapsed_loss) <= self.loss_tolerance * scale
        )
        self._pinned_run = self._pinned_run + 1 if pinned else 0
        return self._pinned_run >= self.window

    def _raise(
        self,
        kind: str,
        loss: float,
        active: float | None,
        d_ap: float | None,
        d_an: float | None,
    ) -> CollapseAlarm:
        reference = self._reference_distances()
        self.alarm = CollapseAlarm(
            kind=kind,
            step=self.step,
            loss=loss,
            active_fraction=active,
            mean_d_ap=d_ap,
            mean_d_an=d_an,
            reference_d_ap=reference[0] if reference else None,
            reference_d_an=reference[1] if reference else None,
            collapsed_loss=self.collapsed_loss,
            fixes=self.fixes,
        )
        return self.alarm

    # -- resume ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Primitives only (stored in checkpoints, loadable with ``weights_only=True``)."""
        return {
            "step": self.step,
            "reference": [list(r) for r in self._reference],
            "vanished_run": self._vanished_run,
            "pinned_run": self._pinned_run,
            "alarm": self.alarm.as_dict() if self.alarm is not None else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` stored."""
        self.step = int(state["step"])
        self._reference = [(float(a), float(b)) for a, b in state["reference"]]
        self._vanished_run = int(state["vanished_run"])
        self._pinned_run = int(state["pinned_run"])
        alarm = state.get("alarm")
        if alarm is None:
            self.alarm = None
        else:
            fields = {k: v for k, v in alarm.items() if k != "summary"}
            fields["fixes"] = tuple(fields.get("fixes", ()))
            self.alarm = CollapseAlarm(**fields)
