"""Report sections about how a run went and where it came from: the best epoch and early
stop, the collapse alarm (a warning box with the likely fixes) and the provenance (world
size and global batch, library versions, git revision, command line, seed, wall time, the
threshold ``verify`` / ``search`` use). Each returns Markdown lines ([] when not applicable).

Example:
    >>> outcome_lines({"best_epoch": 3, "epochs": 5, "monitor": "val_map_at_r",
    ...                "best_value": 0.5, "evaluated_checkpoint": "best.pt"})[0]
    'Best epoch 3 of 5 by val map_at_r = 0.5000; the test metrics are those of best.pt.'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["collapse_lines", "outcome_lines", "provenance_lines"]


def outcome_lines(summary: Mapping[str, Any]) -> list[str]:
    """The best epoch (and an early stop), when the run tracked one."""
    best = summary.get("best_epoch")
    if best is None:
        return []
    monitor = str(summary.get("monitor") or "").replace("val_", "val ", 1)
    value = summary.get("best_value")
    shown = f" = {value:.4f}" if isinstance(value, (int, float)) else ""
    line = (
        f"Best epoch {best} of {summary.get('epochs')} by {monitor}{shown}; the test metrics "
        f"are those of {summary.get('evaluated_checkpoint', 'best.pt')}."
    )
    if summary.get("stopped_early"):
        line += " Training stopped early (patience ran out)."
    return [line, ""]


def collapse_lines(summary: Mapping[str, Any]) -> list[str]:
    """A warning box for the collapse alarm, with the likely fixes."""
    alarm = summary.get("collapse")
    if not alarm:
        return []
    lines = [f"> **Warning — embedding collapse** (step {alarm.get('step')}): "
             f"{alarm.get('summary') or alarm.get('reason', '')}"]  # fmt: skip
    lines += [f"> - try: {fix}" for fix in alarm.get("fixes", [])]
    return [*lines, ""]


def provenance_lines(summary: Mapping[str, Any]) -> list[str]:
    """Where the run came from (``summary["provenance"]``)."""
    info = summary.get("provenance")
    if not info:
        return []
    versions = ", ".join(f"{name} {version}" for name, version in info["versions"].items())
    threshold = info.get("verification_threshold")
    shown = "not recorded" if threshold is None else f"{threshold:.4f} ({info.get('metric')})"
    wall = info.get("wall_seconds")
    return [
        "## Provenance",
        "",
        f"- world size {info['world_size']}, {info['batch_per_rank']} samples a batch per "
        f"process, global batch {info['global_batch']}",
        f"- seed {info['seed']}; wall time "
        + ("not recorded" if wall is None else f"{wall:.1f} s"),
        f"- command: `{info['command']}`",
        f"- code: {info.get('git_revision') or 'git revision unknown'}; {versions}",
        f"- verification threshold used by `verify` / `search`: {shown}",
        "",
    ]
