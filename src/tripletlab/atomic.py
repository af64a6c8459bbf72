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
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_torch_save", "fsync_dir"]


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    fsync_dir(path.parent)
    return path


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
