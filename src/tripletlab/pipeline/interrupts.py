"""Ctrl-C that always stops a run: :class:`InterruptGuard`.

Python turns SIGINT into a ``KeyboardInterrupt`` raised wherever the main thread is; code
that catches broad exceptions (some numerical libraries do, around their worker pools) can
swallow it, and the run would go on and exit 0. The guard installs a SIGINT handler that
records the interrupt before raising ``KeyboardInterrupt``, and :meth:`check` raises it
again at the next step boundary, so a swallowed Ctrl-C still stops the run. The CLI turns a
``KeyboardInterrupt`` into exit status 130. A run stopped this way keeps its last
checkpoint: ``--resume`` continues it.

Example:
    >>> with InterruptGuard() as guard:
    ...     guard.check()  # nothing happened: returns
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["InterruptGuard"]


class InterruptGuard:
    """Records SIGINT while active (main thread only; elsewhere it does nothing)."""

    def __init__(self) -> None:
        self.interrupted = False
        self._previous: Any = None
        self._active = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.interrupted = True
        raise KeyboardInterrupt

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if SIGINT arrived (even if something swallowed it)."""
        if self.interrupted:
            raise KeyboardInterrupt

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._active = True
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._active:
            signal.signal(signal.SIGINT, self._previous)
            self._active = False
