"""Markdown tables and figures of the field protocols: the CMC curve, the verification fold table,
with/without re-ranking tables and the per-class table with the worst classes.

Every function returns Markdown text (or writes a PNG and returns its path), so a report is
assembled from them and rendered to HTML by :mod:`tripletlab.report.html`.

Example:
    >>> print(markdown_table(["a", "b"], [["x", 0.5]]))
    | a | b |
    |---|---:|
    | x | 0.5000 |
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from tripletlab.report.plots import save_figure

#: Readable names of protocol metrics (anything else: underscores become spaces).
METRIC_NAMES: dict[str, str] = {
    "rank_1": "rank-1",
    "rank_5": "rank-5",
    "rank_10": "rank-10",
    "map": "mAP",
    "minp": "mINP",
    "precision_at_1": "P@1",
    "r_precision": "R-precision",
    "map_at_r": "MAP@R",
    "accuracy_mean": "accuracy (mean)",
    "accuracy_std": "accuracy (std)",
}


def metric_name(key: str) -> str:
    """``"recall_at_4"`` → ``"Recall@4"``, ``"map"`` → ``"mAP"``; others de-underscored."""
    if key in METRIC_NAMES:
        return METRIC_NAMES[key]
    if key.startswith("recall_at_"):
        return f"Recall@{key.removeprefix('recall_at_')}"
    return key.replace("_", " ")


def format_value(value: Any) -> str:
    """Floats with 4 decimals, ints as they are, None / NaN as an en dash."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4f}"
    return str(value).replace("|", "\\|")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; numeric columns right-aligned (by the first row)."""
    first = rows[0] if rows else [""] * len(headers)
    align = [
        "---:" if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) else "---"
        for v in first
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(format_value(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def comparison_table(
    results: Mapping[str, Mapping[str, Any]], keys: Sequence[str], *, reference: str | None = None
) -> str:
    """Variants (rows) × metrics (columns), each cell with its change against ``reference``
    (default: the first variant) — the with/without re-ranking table.

    Example:
        >>> r = {"plain": {"map": 0.5}, "re-ranked": {"map": 0.625}}
        >>> print(comparison_table(r, ["map"]))
        | variant | mAP |
        |---|---|
        | plain | 0.5000 |
        | re-ranked | 0.6250 (+0.1250) |
    """
    names = list(results)
    base = results[reference or names[0]] if names else {}
    rows = []
    for name in names:
        cells: list[Any] = [name]
        for key in keys:
            value, ref = results[name].get(key), base.get(key)
            text = format_value(value)
            if name != (reference or names[0]) and _number(value) and _number(ref):
                text += f" ({value - ref:+.4f})"  # type: ignore[operator]  # numbers, checked
            cells.append(text)
        rows.append(cells)
    return markdown_table(["variant", *(metric_name(k) for k in keys)], rows)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def fold_table(verification: Mapping[str, Any]) -> str:
    """The per-fold table of :func:`~tripletlab.evaluate.face_verification.ten_fold_verification`
    and a last row with mean ± std."""
    rows: list[list[Any]] = [
        [f["fold"] + 1, f["n_pairs"], f["threshold"], f["train_accuracy"], f["accuracy"]]
        for f in verification["folds"]
    ]
    mean, std = verification["accuracy_mean"], verification["accuracy_std"]
    rows.append(["mean ± std", "", "", "", f"{mean:.4f} ± {std:.4f}"])
    headers = ["fold", "pairs", "threshold (from the other folds)", "accuracy there", "accuracy"]
    return markdown_table(headers, rows)


def per_class_markdown(rows: Sequence[Mapping[str, Any]], worst: int = 10) -> str:
    """The ``worst`` classes of :func:`~tripletlab.evaluate.dml_protocol.per_class_table`."""
    shown = [
        [
            r["name"],
            r["n_queries"],
            r["precision_at_1"],
            r["map_at_r"],
            "–" if r["confused_with"] is None else f"{r['confused_name']} ({r['confused_count']}×)",
        ]
        for r in rows[:worst]
    ]
    headers = ["class", "queries", "P@1", "MAP@R", "most confused with (wrong top-1 count)"]
    return markdown_table(headers, shown)


def plot_cmc(curves: Mapping[str, Sequence[float]], path: str | Path, max_rank: int = 20) -> Path:
    """Overlaid CMC curves (rank 1…max_rank) of several variants, saved as a PNG."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, cmc in curves.items():
        values = np.asarray(cmc, dtype=float)[:max_rank]
        ax.plot(np.arange(1, len(values) + 1), values, "o-", ms=3, label=name)
    ax.set(xlabel="rank", ylabel="matching rate (CMC)", title="CMC curve", ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)
