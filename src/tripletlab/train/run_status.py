"""Run directories that never clobber each other, and a status file that tells how a run ended.

* :func:`default_run_name` — ``<dataset>-<model>-<loss>-<YYYYMMDD-HHMMSS>``, from the run's
  own settings (a dataset path contributes its file or folder name), so a Fashion-MNIST CNN
  run is never filed as ``digits-mlp``.
* :func:`unique_run_dir` — that name under a root, with ``-2``, ``-3``, … appended while the
  folder exists (two runs started in the same second get two folders).
* :func:`claim_run_dir` — refuses to reuse a folder that holds a run unless the user asked to
  ``resume`` it or to ``overwrite`` it (then its contents are deleted first).
* :class:`RunStatus` — ``status.json`` in the run folder, written atomically
  (:func:`~tripletlab.atomic.atomic_write`): ``running`` when the run starts,
  ``completed`` at its end, ``failed`` with the error's type and one-line message when it
  raises. A run killed outright stays ``running``; :func:`read_status` reports it as
  ``killed`` when its process is gone (same host).
* :func:`require_completed` — what ``evaluate`` / ``embed`` call first: one line naming the
  run's state when it did not complete.

Example:
    >>> import datetime, tempfile
    >>> when = datetime.datetime(2026, 11, 29, 12, 0, 5)
    >>> default_run_name("digits", "mlp", "batch-hard", when)
    'digits-mlp-batch-hard-20261129-120005'
    >>> root = tempfile.mkdtemp()
    >>> with RunStatus(claim_run_dir(unique_run_dir(root, "demo"))) as status:
    ...     pass
    >>> read_status(status.run_dir)["state"]
    'completed'
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from tripletlab.atomic import atomic_write
from tripletlab.errors import ConfigError, TripletlabError

__all__ = [
    "STATES",
    "STATUS_FILE",
    "RunExistsError",
    "RunNotCompletedError",
    "RunStatus",
    "claim_run_dir",
    "default_run_name",
    "read_status",
    "require_completed",
    "unique_run_dir",
]

#: The status file's name inside a run directory.
STATUS_FILE = "status.json"
#: States written by :class:`RunStatus`; ``killed`` is inferred by :func:`read_status`.
STATES = ("running", "completed", "failed")
#: Suffixes tried by :func:`unique_run_dir` before giving up (a full folder is a bug).
MAX_SUFFIX = 10_000
_UNSAFE = re.compile(r"[^a-z0-9._-]+")


class RunExistsError(TripletlabError, FileExistsError):
    """The run directory already holds a run and neither resume nor overwrite was asked."""


class RunNotCompletedError(TripletlabError, RuntimeError):
    """The run directory holds a run that failed, was killed, or is still running."""


def _slug(text: str) -> str:
    """A lowercase file-name-safe piece: a path gives its last component (no suffix)."""
    text = str(text).rstrip("/\\")
    if "/" in text or "\\" in text or "." in Path(text).name:
        text = Path(text).stem or Path(text).name
    return _UNSAFE.sub("-", text.lower()).strip("-.") or "data"


def default_run_name(dataset: str, model: str, loss: str, when: dt.datetime | None = None) -> str:
    """``<dataset>-<model>-<loss>-<YYYYMMDD-HHMMSS>`` (local time now when ``when`` is None).

    Example:
        >>> default_run_name("/data/My Faces/", "cnn", "semi-hard", dt.datetime(2026, 1, 2))
        'my-faces-cnn-semi-hard-20260102-000000'
    """
    when = when or dt.datetime.now()
    parts = [_slug(dataset), _slug(model), _slug(loss), when.strftime("%Y%m%d-%H%M%S")]
    return "-".join(parts)


def unique_run_dir(root: str | Path, name: str) -> Path:
    """``root/name``, or ``root/name-2``, ``-3``, … — the first that does not exist."""
    root = Path(root)
    candidate = root / name
    for suffix in range(2, MAX_SUFFIX):
        if not candidate.exists():
            return candidate
        candidate = root / f"{name}-{suffix}"
    raise RunExistsError(f"{root}: {MAX_SUFFIX} runs named {name!r} already; choose --out")


#: The run lock's file (:class:`tripletlab.pipeline.run_lock.RunLock`): taken before the
#: directory is claimed, so it is neither a sign of a run nor removed by ``overwrite``.
LOCK_FILE = ".lock"


def _run_entries(path: Path) -> list[Path]:
    return [entry for entry in path.iterdir() if entry.name != LOCK_FILE] if path.is_dir() else []


def _holds_a_run(path: Path) -> bool:
    return bool(_run_entries(path))


def claim_run_dir(path: str | Path, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Make ``path`` this run's directory, refusing to clobber another run.

    * an absent or empty folder: created / used;
    * a folder holding files: only with ``resume`` (kept as it is) or ``overwrite`` (emptied);
    * ``resume`` of a folder without a run: a ConfigError.

    Raises:
        ConfigError: both ``resume`` and ``overwrite``; ``resume`` with nothing to resume;
            ``path`` is a file.
        RunExistsError: the folder holds a run and neither flag is set.
    """
    path = Path(path)
    if resume and overwrite:
        raise ConfigError("--resume and --overwrite exclude each other: continue or replace?")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"run directory {path} is a file")
    if resume:
        if not _holds_a_run(path):
            raise ConfigError(f"--resume: no run in {path}")
        return path
    if _holds_a_run(path):
        if not overwrite:
            state = read_status(path).get("state", "unknown")
            raise RunExistsError(
                f"{path} already holds a run (status: {state}); pass --resume to continue it "
                "or --overwrite to replace it, or choose another --out"
            )
        for entry in _run_entries(path):  # the lock file stays: its holder is this process
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def read_status(run_dir: str | Path) -> dict[str, Any]:
    """The run's status record (``{}`` when it has none: an old or foreign folder).

    A ``running`` record whose process no longer exists on this host is returned with
    ``state = "killed"``.
    """
    path = Path(run_dir) / STATUS_FILE
    if not path.is_file():
        return {}
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {"state": "unreadable"}
    if (
        status.get("state") == "running"
        and status.get("host") == socket.gethostname()
        and isinstance(status.get("pid"), int)
        and not _process_alive(status["pid"])
    ):
        status["state"] = "killed"
    return status


def require_completed(run_dir: str | Path) -> dict[str, Any]:
    """The status of a completed run; RunNotCompletedError in one line otherwise.

    A folder without a status file (written before status files existed) passes.
    """
    status = read_status(run_dir)
    state = status.get("state")
    if state in (None, "completed"):
        return status
    if state == "failed":
        reason = f": {status.get('error_type', 'error')}: {status.get('error', '')}"
    elif state == "killed":
        reason = " (its process is gone); continue it with --resume"
    else:
        reason = f" (pid {status.get('pid')} on {status.get('host')})"
    raise RunNotCompletedError(f"run {run_dir} {state}{reason}".rstrip(": "))


class RunStatus:
    """``status.json`` of a run: ``running`` → ``completed`` | ``failed`` (a context manager).

    Args:
        run_dir: the run directory (created if needed).
        command: the command line recorded in the file (default ``sys.argv``).

    On an exception inside the ``with`` block the status becomes ``failed`` with the error's
    type and first line, and the exception propagates. :meth:`update` adds fields (e.g.
    ``epoch``, ``best_epoch``, the collapse alarm) while running.
    """

    def __init__(self, run_dir: str | Path, command: Sequence[str] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / STATUS_FILE
        previous = read_status(self.run_dir)
        self.record: dict[str, Any] = {
            "state": "running",
            "started": _now(),
            "updated": _now(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": list(sys.argv if command is None else command),
            "error": None,
            "error_type": None,
        }
        if previous.get("started"):
            self.record["first_started"] = previous.get("first_started", previous["started"])
            self.record["resumed_from_state"] = previous.get("state")

    def _write(self) -> None:
        self.record["updated"] = _now()
        text = json.dumps(self.record, indent=2, default=str) + "\n"
        atomic_write(self.path, lambda handle: handle.write(text.encode("utf-8")))

    def start(self) -> RunStatus:
        """Write ``running``."""
        self.record["state"] = "running"
        self._write()
        return self

    def update(self, **fields: Any) -> None:
        """Add or change fields and rewrite the file (state unchanged)."""
        self.record.update(fields)
        self._write()

    def complete(self, **fields: Any) -> None:
        """Write ``completed``."""
        self.record.update(fields, state="completed", error=None, error_type=None)
        self._write()

    def fail(self, error: BaseException) -> None:
        """Write ``failed`` with the error's type and first line."""
        lines = str(error).strip().splitlines()
        message = lines[0] if lines else ""
        if isinstance(error, KeyboardInterrupt):
            message = message or "interrupted (Ctrl-C)"
        self.record.update(state="failed", error=message, error_type=type(error).__name__)
        self._write()

    def __enter__(self) -> RunStatus:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.complete()
        else:
            self.fail(exc)
