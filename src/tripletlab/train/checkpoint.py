"""Checkpoints: atomic, complete, and loadable with ``torch.load(..., weights_only=True)``.

A checkpoint holds everything a killed run needs to finish exactly as an uninterrupted one
would: the model, optimiser and scheduler state dicts, the random-number-generator states of
torch, numpy and Python, the epoch and step counters (the P×K sampler is re-seeded from
``seed + epoch``, so the epoch is its whole state), the metric history and the resolved config.

Only tensors and primitive containers are stored, so the safe ``weights_only=True`` loader
reads it (no pickled code runs on load). Writes go to a temporary file in the same folder,
are fsync'ed and then ``os.replace``d over the target: a crash leaves either the old or the
new file, never a truncated one.

A file that is not such a checkpoint — empty, truncated, random bytes, a pickle of other
objects, an empty dict — raises :class:`CheckpointError` (one line naming the file and what
is wrong); torch's own message, which suggests turning the safe loader off, is never shown.

Example:
    >>> import tempfile, torch
    >>> from tripletlab.train.checkpoint import save_checkpoint, load_checkpoint
    >>> path = tempfile.mkdtemp() + "/last.pt"
    >>> path = save_checkpoint(path, {"epoch": 1, "weights": torch.ones(2)})
    >>> load_checkpoint(path)["epoch"]
    1
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tripletlab.atomic import atomic_torch_save
from tripletlab.errors import DataError, TripletlabError

__all__ = [
    "CheckpointError",
    "capture_rng_state",
    "check_fits",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]

#: What every checkpoint the Trainer writes holds (a resume needs all of it).
TRAINER_KEYS = ("epoch", "global_step", "model", "optimizer", "rng")


class CheckpointError(DataError):
    """A checkpoint file cannot be read, or does not hold what the caller needs."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (whitespace collapsed, cut at ``limit``)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (:func:`tripletlab.atomic.atomic_torch_save`)."""
    return atomic_torch_save(state, path)


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    *,
    required: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Load a checkpoint with the safe ``weights_only=True`` unpickler.

    Args:
        path: the file.
        map_location: where its tensors go.
        required: keys the checkpoint must hold (e.g. :data:`TRAINER_KEYS`).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a readable checkpoint, not a dict, or a required key missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is an empty file")
    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of foreign files, naming its loader.
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        # Only the type: torch's text advises weights_only=False, which would run code.
        raise CheckpointError(
            f"checkpoint {path} cannot be read: truncated, corrupt or not a tripletlab "
            f"checkpoint ({type(exc).__name__})"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a dict")
    missing = [key for key in required if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(map(repr, missing))}")
    return state


def check_fits(path: str | Path, restore: Any, *args: Any) -> Any:
    """``restore(*args)`` (loading state dicts from a checkpoint), with the errors a
    checkpoint of other content causes (shape mismatches, missing entries, wrong types)
    raised as one-line :class:`CheckpointError`s naming ``path``."""
    try:
        return restore(*args)
    except TripletlabError:
        raise  # already one line that names the problem
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint {path} does not fit: {one_line(exc)}") from None


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
