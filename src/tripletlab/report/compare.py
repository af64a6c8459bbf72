"""Compare runs: one table of their test metrics and overlaid per-epoch curves.

Reads from each run directory (the layout ``tripletlab train`` writes):

* ``metrics.json`` — the test metrics under ``"test"`` (else the file's top-level numbers),
  plus ``dataset``, ``epochs`` and ``train_seconds`` when present;
* ``epochs.jsonl`` — one record per epoch (``epoch``, ``loss``, ``val_*`` metrics); optional.

Writes ``compare.md`` (the table, then the figure), ``compare_curves.png`` and, when
markdown-it-py is installed, the self-contained ``compare.html``.

Example:
    >>> import json, tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for name, p1 in (("a", 0.5), ("b", 0.75)):
    ...     (root / name).mkdir()
    ...     _ = (root / name / "metrics.json").write_text(json.dumps({"test": {"precision_at_1": p1}}))
    >>> print(compare_runs([root / "a", root / "b"], root / "cmp").table)
    | run | P@1 |
    |---|---|
    | a | 0.5000 |
    | b | 0.7500 (+0.2500) |
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from tripletlab.errors import DataError
from tripletlab.report.html import HtmlUnavailable, write_html
from tripletlab.report.plots import save_figure
from tripletlab.report.protocol_tables import comparison_table, metric_name

#: Metrics put first in the table, when the runs have them.
FIRST_METRICS = ("precision_at_1", "map_at_r", "r_precision", "rank_1", "map", "minp")
#: Per-epoch validation metrics drawn, the first one every run has.
CURVE_METRICS = ("val_precision_at_1", "val_map_at_r", "val_r_precision")


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare_runs` wrote: the table's Markdown and the files."""

    table: str
    markdown_path: Path
    figure_path: Path
    html_path: Path | None


def read_run(run_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(test metrics, epoch records) of one run directory.

    Raises:
        DataError: the folder or its ``metrics.json`` is missing or unreadable.
    """
    run_dir = Path(run_dir)
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise DataError(f"{run_dir} is not a finished run: {path} does not exist")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{path} is not valid JSON ({error.msg}, line {error.lineno})") from None
    test = summary.get("test", summary) if isinstance(summary, dict) else {}
    metrics = {k: v for k, v in test.items() if _is_number(v)}
    for key in ("epochs", "train_seconds"):
        if _is_number(summary.get(key)):
            metrics[key] = summary[key]
    return metrics, _read_epochs(run_dir / "epochs.jsonl")


def _read_epochs(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill: skipped
            continue
    return [r for r in records if isinstance(r, dict)]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compare_runs(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    metrics: Sequence[str] | None = None,
) -> Comparison:
    """One table (runs × metrics, each with its change against the first run) and overlaid
    curves of the epoch logs, written to ``out_dir``.

    Args:
        run_dirs: two or more run directories (the first is the reference).
        out_dir: folder for ``compare.md``, ``compare_curves.png``, ``compare.html``.
        metrics: the table's metric keys (default: those all runs share, key ones first).

    Raises:
        DataError: fewer than two runs, or a run that is not a finished run directory.
    """
    if len(run_dirs) < 2:
        raise DataError("compare needs at least two run directories")
    names = _unique_names([Path(d) for d in run_dirs])
    runs = {name: read_run(d) for name, d in zip(names, run_dirs, strict=True)}
    keys = list(metrics) if metrics is not None else _shared_keys([m for m, _ in runs.values()])
    table = comparison_table({n: m for n, (m, _) in runs.items()}, keys).replace(
        "| variant |", "| run |", 1
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figure = plot_run_curves({n: e for n, (_, e) in runs.items()}, out / "compare_curves.png")
    sources = "\n".join(f"- **{n}**: `{Path(d)}`" for n, d in zip(names, run_dirs, strict=True))
    text = (
        f"# Run comparison\n\n{sources}\n\n## Test metrics\n\n{table}\n\n"
        f"Changes in brackets are against **{names[0]}**.\n\n## Training curves\n\n"
        f"![loss and validation metric per epoch]({figure.name})\n"
    )
    markdown_path = out / "compare.md"
    markdown_path.write_text(text, encoding="utf-8")
    html_path: Path | None
    try:
        html_path = write_html(markdown_path)
    except HtmlUnavailable:  # markdown-it-py absent: the Markdown is the report
        html_path = None
    return Comparison(table, markdown_path, figure, html_path)


def _unique_names(paths: list[Path]) -> list[str]:
    names = [p.name or str(p) for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(p) for p in paths]


def _shared_keys(all_metrics: list[dict[str, Any]]) -> list[str]:
    shared = [k for k in all_metrics[0] if all(k in m for m in all_metrics[1:])]
    first = [k for k in FIRST_METRICS if k in shared]
    return first + [k for k in shared if k not in first]


def plot_run_curves(epochs: dict[str, list[dict[str, Any]]], path: str | Path) -> Path:
    """Loss per epoch and the first validation metric all runs logged, one line per run."""
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    metric = next(
        (
            m
            for m in CURVE_METRICS
            if all(any(m in r for r in rec) for rec in epochs.values() if rec)
        ),
        None,
    )
    for name, records in epochs.items():
        if not records:
            continue
        xs = [r.get("epoch") for r in records]
        loss_ax.plot(xs, [r.get("loss") for r in records], "o-", ms=3, label=name)
        if metric is not None:
            points = [(r["epoch"], r[metric]) for r in records if r.get(metric) is not None]
            if points:
                metric_ax.plot(*zip(*points, strict=True), "o-", ms=3, label=name)
    loss_ax.set(title="training loss (epoch mean)", xlabel="epoch", ylabel="loss")
    label = metric_name(metric.removeprefix("val_")) if metric else "no validation metric logged"
    metric_ax.set(title=f"validation {label}", xlabel="epoch", ylabel=label)
    for ax in (loss_ax, metric_ax):
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no epoch logs", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return save_figure(fig, path)
