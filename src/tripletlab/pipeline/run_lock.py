"""One process at a time in a run directory: an exclusive ``flock`` on ``<run>/.lock``.

Two ``train`` processes writing the same run directory would interleave their logs and
overwrite each other's checkpoints and metrics. :class:`RunLock` takes an exclusive,
non-blocking ``fcntl.flock`` on the lock file and writes the holder (pid, host, start time)
into it; a second process gets :class:`RunLockedError` naming that holder. The kernel
releases the lock when the holder exits or is killed, so a stale lock file never blocks a
later run (the file is left in place; only the ``flock`` counts).

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with RunLock(folder):
    ...     try:
    ...         RunLock(folder).acquire()
    ...     except RunLockedError as exc:
    ...         print(str(exc).split(" is in use")[0] == f"run directory {folder}")
    True
"""

from __future__ import annotations

import datetime
import os
import socket
from pathlib import Path
from types import TracebackType

from tripletlab.errors import TripletlabError

__all__ = ["RunLock", "RunLockedError"]


class RunLockedError(TripletlabError):
    """Another process holds the run directory's lock."""


class RunLock:
    """An exclusive lock on a run directory (a context manager; see the module docstring)."""

    FILE = ".lock"

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / self.FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock, or raise :class:`RunLockedError` naming the holder."""
        import fcntl  # POSIX only; imported here so that the module imports everywhere

        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(
                f"run directory {self.run_dir} is in use by another process ({holder}); "
                "wait for it to finish or choose another --out"
            ) from None
        started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {started}".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock back (closing the file releases the flock)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
