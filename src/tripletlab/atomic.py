"""Writing a file atomically: temporary file, fsync, ``os.replace``, directory fsync.

A crash at any moment leaves either the old file or the new one, never a truncated one:
the data go to a temporary file ``.<name>.<random>.tmp`` in the target's folder, are
flushed to disk, the file is renamed over the target (atomic on POSIX), and the folder entry
is flushed so the rename itself survives a power cut. A failed write (a full disk, a
read-only folder, Ctrl-C) removes its temporary file and raises an ``OSError`` that names
the target; a kill leaves the temporary file behind, and :func:`remove_stale_temps` clears
those. Used by checkpoints, logs, metrics, reports and gallery indexes.

Example:
    >>> import tempfile, torch
    >>> path = atomic_torch_save({"w": torch.ones(2)}, tempfile.mkdtemp() + "/state.pt")
    >>> torch.load(path, weights_only=True)["w"]
    tensor([1., 1.])
    >>> atomic_write_text(path.parent / "note.txt", "hi").read_text()
    'hi'
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

__all__ = [
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "fsync_dir",
    "remove_stale_temps",
]

#: Suffix of the temporary files; :func:`remove_stale_temps` matches ``.*`` + this.
TEMP_SUFFIX = ".tmp"


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(handle)`` on a temporary binary file and move it over ``path`` atomically
    (parents created); returns the path. OSError naming ``path`` when the disk refuses."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent
        )
    except OSError as exc:
        raise _named(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        if isinstance(exc, OSError):
            raise _named(exc, path) from None
        raise
    fsync_dir(path.parent)
    return path


def _named(exc: OSError, path: Path) -> OSError:
    """The same error with the target's path (``[Errno 28] No space left on device: 'x'``)."""
    if exc.errno is None:
        return OSError(f"cannot write {path}: {exc}")
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (parents created); returns the path.

    The object is serialised in memory first: torch reports a failed file write (ENOSPC) as
    a bare ``RuntimeError``, while a plain write raises the ``OSError`` that names the cause.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, lambda handle: handle.write(buffer.getbuffer()))


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files (``.*.tmp``) a killed writer left in ``folder``; returns
    them. Call it only while no other process writes there (under the run's lock)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for stale in folder.glob(f".*{TEMP_SUFFIX}"):
        if stale.is_file():
            stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename is durable only once its folder is, on POSIX)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
