"""Writing a file atomically: temporary file, fsync, ``os.replace``, directory fsync.

A crash at any moment leaves either the old file or the new one, never a truncated one:
the data go to a temporary file in the target's folder, are flushed to disk, the file is
renamed over the target (atomic on POSIX), and the folder entry is flushed so the rename
itself survives a power cut. Used by checkpoints and gallery indexes.

Example:
    >>> import tempfile, torch
    >>> path = atomic_torch_save({"w": torch.ones(2)}, tempfile.mkdtemp() + "/state.pt")
    >>> torch.load(path, weights_only=True)["w"]
    tensor([1., 1.])
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

__all__ = ["atomic_torch_save", "atomic_write", "fsync_dir"]


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write a file atomically: ``write(handle)`` into a temp file of the same folder, fsync,
    ``os.replace`` it over ``path``, fsync the folder (a crash leaves the old file or the new,
    never half of one, and no temp file). Parents are created; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    fsync_dir(path.parent)
    return path


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (:func:`atomic_write`); returns the path."""
    return atomic_write(path, lambda handle: torch.save(obj, handle))


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
