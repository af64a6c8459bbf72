"""Step and epoch logs of a run: JSON Lines (one record a line), a CSV of epochs, and
TensorBoard event files when ``tensorboard`` is installed.

Files in the run directory:
    ``steps.jsonl``   one record per optimiser step: epoch, step, loss, lr and the triplet
                      statistics (active / easy / semi-hard / hard fractions, mean d_ap, d_an)
    ``epochs.jsonl``  one record per epoch: mean loss, validation retrieval metrics, time
    ``epochs.csv``    the same epoch records as a table
    ``tensorboard/``  scalars of both, only when tensorboard is importable

On ``--resume`` the logs are cut back to the checkpoint (:meth:`RunLogger.truncate`), so a
resumed run's logs equal an uninterrupted run's. Records are only ever appended, and a log
that is cut back (or the CSV, rewritten each epoch) is written whole to a new file that
replaces the old one atomically: a kill at any moment leaves the old log or the new one,
never a log missing records.

Example:
    >>> import tempfile
    >>> from tripletlab.train.logging import RunLogger, read_jsonl
    >>> folder = tempfile.mkdtemp()
    >>> with RunLogger(folder, tensorboard=False) as log:
    ...     log.log_steps([{"epoch": 1, "step": 1, "loss": 0.5}])
    >>> read_jsonl(folder + "/steps.jsonl")[0]["loss"]
    0.5
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tripletlab.atomic import atomic_write_text

__all__ = ["RunLogger", "read_jsonl"]


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All records of a JSON Lines file ([] when it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a kill: drop it
                continue
    return records


def _clean(value: Any) -> Any:
    # JSON has no NaN/Inf; write null instead of invalid JSON.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _jsonl_line(record: Mapping[str, Any]) -> str:
    return json.dumps({k: _clean(v) for k, v in record.items()}) + "\n"


class RunLogger:
    """Appends step and epoch records to a run directory (see the module docstring)."""

    #: The files it writes inside the run directory.
    STEPS_FILE = "steps.jsonl"
    EPOCHS_FILE = "epochs.jsonl"
    EPOCHS_CSV_FILE = "epochs.csv"
    TENSORBOARD_DIR = "tensorboard"

    def __init__(self, run_dir: str | Path, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.steps_path = self.run_dir / self.STEPS_FILE
        self.epochs_path = self.run_dir / self.EPOCHS_FILE
        self.epochs_csv = self.run_dir / self.EPOCHS_CSV_FILE
        self._writer = self._tensorboard_writer() if tensorboard else None

    def _tensorboard_writer(self) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is an optional extra
            return None
        return SummaryWriter(log_dir=str(self.run_dir / self.TENSORBOARD_DIR))

    def truncate(self, last_epoch: int) -> None:
        """Keep only the records of epochs ≤ ``last_epoch`` (for a resumed run)."""
        for path in (self.steps_path, self.epochs_path):
            records = read_jsonl(path)
            kept = [r for r in records if int(r.get("epoch", 0)) <= last_epoch]
            if len(kept) != len(records) or not path.is_file():
                atomic_write_text(path, "".join(_jsonl_line(r) for r in kept))
        self._write_csv(read_jsonl(self.epochs_path))

    def reset(self) -> None:
        """Start fresh logs (a new run in an existing directory)."""
        self.truncate(last_epoch=0)

    @staticmethod
    def _append_jsonl(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
        with path.open("a", encoding="utf-8") as handle:
            handle.write("".join(_jsonl_line(r) for r in records))
            handle.flush()

    def _write_csv(self, records: list[dict[str, Any]]) -> None:
        columns: list[str] = []
        for record in records:
            columns += [key for key in record if key not in columns]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        writer.writerows(records)
        atomic_write_text(self.epochs_csv, text.getvalue())

    def log_steps(self, records: list[dict[str, Any]]) -> None:
        """Append step records (written per epoch: the hot loop does not wait on disk)."""
        self._append_jsonl(self.steps_path, records)
        if self._writer is not None:
            for record in records:
                for key, value in record.items():
                    if key not in ("epoch", "step") and isinstance(value, (int, float)):
                        self._writer.add_scalar(f"step/{key}", value, record["step"])

    def log_epoch(self, record: dict[str, Any]) -> None:
        """Append one epoch record to ``epochs.jsonl`` and rewrite ``epochs.csv``."""
        self._append_jsonl(self.epochs_path, [record])
        self._write_csv(read_jsonl(self.epochs_path))
        if self._writer is not None:
            for key, value in record.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self._writer.add_scalar(f"epoch/{key}", value, record["epoch"])
            self._writer.flush()

    def close(self) -> None:
        """Close the TensorBoard writer, if any."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
