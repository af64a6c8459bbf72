"""Checkpoints: atomic, complete, and loadable with ``torch.load(..., weights_only=True)``.

A checkpoint holds everything a killed run needs to finish exactly as an uninterrupted one
would: the model, optimiser and scheduler state dicts, the random-number-generator states of
torch, numpy and Python, the epoch and step counters (the P×K sampler is re-seeded from
``seed + epoch``, so the epoch is its whole state), the metric history and the resolved config.

Only tensors and primitive containers are stored, so the safe ``weights_only=True`` loader
reads it (no pickled code runs on load). Writes go to a temporary file in the same folder,
are fsync'ed and then ``os.replace``d over the target: a crash leaves either the old or the
new file, never a truncated one.

Example:
    >>> import tempfile, torch
    >>> from tripletlab.train.checkpoint import save_checkpoint, load_checkpoint
    >>> path = tempfile.mkdtemp() + "/last.pt"
    >>> save_checkpoint(path, {"epoch": 1, "weights": torch.ones(2)}).name
    'last.pt'
    >>> load_checkpoint(path)["epoch"]
    1
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

__all__ = [
    "atomic_write",
    "capture_rng_state",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write a file atomically: ``write(handle)`` into a temp file of the same folder, fsync,
    then ``os.replace`` it over ``path`` (a crash leaves the old file or the new, never half
    of one). Used for checkpoints and for the run's status file."""
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
    _fsync_dir(path.parent)
    return path


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temp file + fsync + ``os.replace``)."""
    return atomic_write(path, lambda handle: torch.save(state, handle))


def _fsync_dir(folder: Path) -> None:
    # The rename itself is durable only once the directory entry is flushed (POSIX).
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


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with the safe ``weights_only=True`` unpickler."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


def capture_rng_state() -> dict[str, Any]:
    """torch, numpy and Python RNG states as tensors and primitive containers."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()  # noqa: NPY002 - the legacy global RNG is what user code seeds
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["gauss"],
        )
    )
    py_state = state["python"]
    random.setstate((py_state["version"], tuple(py_state["internal"]), py_state["gauss"]))
