"""What a run shows while it works: phase messages, per-epoch progress, warnings.

Two renderings of the same events, chosen by whether the stream (stderr by default) is a
terminal:

* **terminal** — tqdm bars: one over the epochs whose postfix holds the last epoch's loss,
  learning rate and validation metrics, and one over the steps of the current epoch with the
  running loss; phase messages and warnings are written above the bars (``tqdm.write``). A
  pseudo-terminal that reports 0 columns (some CI runners, ``script``, docker without a
  size) gets :data:`FALLBACK_COLUMNS` instead of a hidden bar.
* **anything else** (a pipe, ``| tee``, a file, a job scheduler) — one plain line per phase
  and per epoch, flushed at once, so logs show life as it happens::

      [tripletlab    0.4s] loading data: digits
      [tripletlab    9.1s] epoch 3/30 loss 0.1342 lr 2.96e-03 val P@1 0.981 MAP@R 0.950 (0.8s)

The per-step loss is a tensor in the trainer's hot loop; :meth:`Progress.step` reads it on
the host only when the bar will be redrawn (at most every ``refresh_seconds``), so progress
does not add a device synchronisation per step.

Example:
    >>> import io
    >>> out = io.StringIO()
    >>> progress = Progress(out, clock=lambda: 0.0)
    >>> progress.phase("training", "30 epochs")
    >>> progress.start_training(epochs=2)
    >>> progress.end_epoch({"epoch": 1, "loss": 0.25, "lr": 0.003, "val_precision_at_1": 0.9})
    >>> progress.close()
    >>> print(out.getvalue(), end="")
    [tripletlab    0.0s] training: 30 epochs
    [tripletlab    0.0s] epoch 1/2 loss 0.2500 lr 3.00e-03 val P@1 0.900
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from torch import Tensor

__all__ = ["FALLBACK_COLUMNS", "PHASES", "Progress", "terminal_columns"]

#: The phases a run announces, in order.
PHASES = ("loading", "training", "evaluating", "writing the report")
#: Width used when a terminal reports 0 columns (tqdm would draw no bar at all).
FALLBACK_COLUMNS = 80
#: Validation metrics shown on the epoch bar and line, with their short names.
SHOWN_METRICS = {
    "val_precision_at_1": "P@1",
    "val_map_at_r": "MAP@R",
    "val_r_precision": "RP",
}
#: Bars put the numbers before the bar, so a narrow terminal shrinks the bar, not the metrics.
BAR_FORMAT = "{desc}: {n_fmt}/{total_fmt}{postfix} |{bar}| {elapsed}<{remaining}"
#: Seconds between host reads of the running step loss (one device sync each).
DEFAULT_REFRESH_SECONDS = 0.5


def terminal_columns(stream: TextIO) -> int:
    """The width of the terminal behind ``stream``; :data:`FALLBACK_COLUMNS` when it is
    unknown or reported as 0 (``COLUMNS`` in the environment wins when set and positive).

    Example:
        >>> import io
        >>> terminal_columns(io.StringIO()) > 0
        True
    """
    from_env = os.environ.get("COLUMNS", "")
    if from_env.isdigit() and int(from_env) > 0:
        return int(from_env)
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return FALLBACK_COLUMNS
    return columns if columns > 0 else FALLBACK_COLUMNS


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (OSError, ValueError):  # a closed stream
        return False


def _format_metrics(record: Mapping[str, Any]) -> dict[str, str]:
    shown = {"loss": f"{float(record['loss']):.4f}"} if "loss" in record else {}
    if "lr" in record:
        shown["lr"] = f"{float(record['lr']):.2e}"
    for key, short in SHOWN_METRICS.items():
        if record.get(key) is not None:
            shown[short] = f"{float(record[key]):.3f}"
    return shown


class Progress:
    """Phase messages and per-epoch progress on ``stream`` (see the module docstring).

    Args:
        stream: where to write (default ``sys.stderr``).
        enabled: False shows nothing at all (``train.progress = false``); warnings still print.
        terminal: force the terminal (True) or plain-line (False) rendering; default: ask the
            stream (``isatty``).
        refresh_seconds: the least time between two host reads of the running step loss.
        clock: seconds since an arbitrary origin (default ``time.perf_counter``).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        enabled: bool = True,
        terminal: bool | None = None,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.terminal = _is_terminal(self.stream) if terminal is None else terminal
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._started = clock()
        self._epochs = 0
        self._epoch_bar: Any = None
        self._step_bar: Any = None
        self._last_refresh = float("-inf")
        self._last_postfix: dict[str, str] = {}

    # -- plain lines -----------------------------------------------------------------------
    def _line(self, text: str) -> None:
        stamp = f"[tripletlab {self._clock() - self._started:6.1f}s] "
        if self.terminal and self._epoch_bar is not None:
            from tqdm.auto import tqdm

            tqdm.write(stamp + text, file=self.stream)
        else:
            self.stream.write(stamp + text + "\n")
        self.stream.flush()

    def phase(self, name: str, detail: str = "") -> None:
        """Announce a phase (one of :data:`PHASES`, or any short verb phrase)."""
        if self.enabled:
            self._line(f"{name}: {detail}" if detail else name)

    def warn(self, message: str) -> None:
        """A warning (e.g. the collapse alarm): always shown, above the bars on a terminal."""
        for i, line in enumerate(message.splitlines()):
            self._line(f"WARNING: {line}" if i == 0 else line)

    # -- bars ------------------------------------------------------------------------------
    def _bar(self, **kwargs: Any) -> Any:
        from tqdm.auto import tqdm

        return tqdm(
            file=self.stream,
            ncols=terminal_columns(self.stream),
            dynamic_ncols=False,
            bar_format=BAR_FORMAT,
            **kwargs,
        )

    def start_training(self, epochs: int, initial: int = 0) -> None:
        """Begin the epoch loop (``initial`` epochs already done, after a resume)."""
        self._epochs = epochs
        if self.enabled and self.terminal:
            self._epoch_bar = self._bar(total=epochs, initial=initial, desc="epochs", unit="ep")

    def start_epoch(self, epoch: int, steps: int) -> None:
        """Begin epoch ``epoch`` (1-based) of ``steps`` optimiser steps."""
        if self.enabled and self.terminal:
            self._step_bar = self._bar(total=steps, desc=f"epoch {epoch}", leave=False)
            self._last_refresh = float("-inf")

    def step(self, loss: Tensor | float | None = None) -> None:
        """One optimiser step done; ``loss`` is read on the host only when the bar redraws."""
        if self._step_bar is None:
            return
        now = self._clock()
        if loss is not None and now - self._last_refresh >= self.refresh_seconds:
            value = float(loss.item() if hasattr(loss, "item") else loss)
            self._step_bar.set_postfix(loss=f"{value:.4f}", refresh=False)
            self._last_refresh = now
        self._step_bar.update(1)

    def end_epoch(self, record: Mapping[str, Any]) -> None:
        """Close the epoch with its record (``epoch``, ``loss``, ``lr``, ``val_*``, seconds)."""
        if self._step_bar is not None:
            self._step_bar.close()
            self._step_bar = None
        if not self.enabled:
            return
        shown = _format_metrics(record)
        if self._epoch_bar is not None:
            self._last_postfix = shown
            self._epoch_bar.set_postfix(shown, refresh=False)
            self._epoch_bar.update(1)
            return
        parts = [f"epoch {record.get('epoch', '?')}/{self._epochs}"]
        parts += [f"{key} {value}" for key, value in shown.items() if key in ("loss", "lr")]
        metrics = [f"{key} {value}" for key, value in shown.items() if key not in ("loss", "lr")]
        if metrics:
            parts.append("val " + " ".join(metrics))
        if record.get("epoch_seconds") is not None:
            parts.append(f"({float(record['epoch_seconds']):.1f}s)")
        self._line(" ".join(parts))

    def close(self) -> None:
        """Close any open bar (call in a ``finally``)."""
        for bar in (self._step_bar, self._epoch_bar):
            if bar is not None:
                bar.close()
        self._step_bar = self._epoch_bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
