"""Peak resident-memory growth of this process during a block (shared by the benchmarks)."""

from __future__ import annotations

import gc
import os
import threading
import time


class PeakMemory:
    """Peak RSS growth of this process during a ``with`` block, sampled every ``interval`` s.

    ``extra`` is the growth in bytes, ``mb`` the same in MiB.

    Example:
        >>> with PeakMemory() as memory:
        ...     block = bytearray(50 * 2**20)
        >>> memory.mb > 40
        True
    """

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> PeakMemory:
        gc.collect()
        self.start = self.rss()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def extra(self) -> int:
        return self.peak - self.start

    @property
    def mb(self) -> float:
        return self.extra / 2**20
