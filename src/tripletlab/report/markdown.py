"""``report.md``: a run's metrics beside the raw-feature baseline, its figures and its config.

:func:`write_report` draws the figures (:mod:`tripletlab.report.plots`) into the run
directory and writes ``report.md`` linking them, so the report renders on GitHub or in any
Markdown viewer. :func:`metrics_table` is the table alone.

Example:
    >>> from tripletlab.report.markdown import metrics_table
    >>> print(metrics_table({"precision_at_1": 0.99}, {"precision_at_1": 0.97}))
    | metric | trained embedding | raw features (baseline) | gain |
    |---|---:|---:|---:|
    | precision@1 | 0.9900 | 0.9700 | +0.0200 |
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tripletlab.atomic import atomic_write_text
from tripletlab.report import plots
from tripletlab.report.run_sections import collapse_lines, outcome_lines, provenance_lines
from tripletlab.train.logging import read_jsonl

__all__ = ["metrics_table", "write_report"]

_NAMES = {
    "precision_at_1": "precision@1",
    "map_at_r": "MAP@R",
    "r_precision": "R-precision",
    "knn_accuracy": "kNN accuracy",
    "nmi": "NMI (k-means)",
    "ami": "AMI (k-means)",
    "verification_auc": "verification AUC",
    "verification_accuracy": "verification accuracy (best threshold)",
    "verification_tar_at_far_0.001": "verification TAR @ FAR=1e-3",
    "verification_tar_at_far_0.01": "verification TAR @ FAR=1e-2",
}
# Counts and thresholds are not comparable between embeddings: left out of the table.
_SKIP = ("n_queries", "n_lone_queries", "verification_threshold")
_FIRST = ("precision_at_1", "map_at_r", "r_precision")


def _name(key: str) -> str:
    if key in _NAMES:
        return _NAMES[key]
    if key.startswith("recall_at_"):
        return f"recall@{key.removeprefix('recall_at_')}"
    return key.replace("_", " ")


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (int, float)) and np.isfinite(value):
        return f"{value:.4f}"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def metrics_table(metrics: Mapping[str, Any], baseline: Mapping[str, Any]) -> str:
    """A Markdown table: each metric, trained vs baseline, and the gain."""
    keys = [k for k in _FIRST if k in metrics]
    keys += [
        k
        for k in metrics
        if k not in keys and k not in _SKIP and (metrics[k] is None or _is_number(metrics[k]))
    ]
    lines = [
        "| metric | trained embedding | raw features (baseline) | gain |",
        "|---|---:|---:|---:|",
    ]
    for key in keys:
        value, base = metrics.get(key), baseline.get(key)
        gain = "–"
        if _is_number(value) and _is_number(base):
            gain = f"{float(value) - float(base):+.4f}"  # type: ignore[arg-type]
        lines.append(f"| {_name(key)} | {_fmt(value)} | {_fmt(base)} | {gain} |")
    return "\n".join(lines)


def _projection_obstacle(embeddings: np.ndarray) -> str | None:
    """Why the embeddings cannot be projected to 2-D (None when they can): fewer than two
    samples, or all of them identical (t-SNE divides by their spread)."""
    if len(embeddings) < 2:
        return f"{len(embeddings)} test sample(s), nothing to project"
    if not np.isfinite(embeddings).all():
        return "the test embeddings hold NaN or Inf"
    if float(np.ptp(embeddings, axis=0).max(initial=0.0)) == 0.0:
        return f"all {len(embeddings)} test embeddings are identical (no spread to project)"
    return None


def _curve(result: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not result or "fpr" not in result or "tpr" not in result:
        return None
    return {"fpr": result["fpr"], "tpr": result["tpr"], "auc": result.get("auc")}


def write_report(
    run_dir: str | Path,
    *,
    cfg: Any,
    summary: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    embeddings: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str] | None = None,
    verification: Mapping[str, Any] | None = None,
    baseline_verification: Mapping[str, Any] | None = None,
    steps: Sequence[Mapping[str, Any]] | None = None,
) -> Path:
    """Draw the figures and write ``run_dir/report.md``; returns its path.

    Args:
        run_dir: the folder the report and its figures are written to.
        cfg: the :class:`~tripletlab.pipeline.config.RunConfig` of the run.
        summary: what goes into ``metrics.json`` (``test``, ``baseline``, sizes, timings).
        history: epoch records.
        embeddings, labels: the test split's embeddings (N, D) and labels (N,).
        class_names: names for the legend.
        verification, baseline_verification: ROC results (``fpr``, ``tpr``, ``auc`` …).
        steps: the step records (default: read from ``run_dir/steps.jsonl``).
    """
    run_dir = Path(run_dir)
    figures: list[tuple[str, str]] = []
    step_records = list(steps) if steps is not None else read_jsonl(run_dir / "steps.jsonl")
    averaged = {
        "mean_active": "mean over active triplets/pairs",
        "mean": "mean over all valid triplets/pairs",
        "sum": "sum",
    }.get(cfg.loss.reduction, cfg.loss.reduction)
    plots.plot_training(
        step_records, list(history), run_dir / "training.png", f"training loss ({averaged})"
    )
    figures.append(("Training: loss, triplet types, validation metrics", "training.png"))
    notes: list[str] = []
    spread = _projection_obstacle(embeddings)
    if spread is not None:
        notes.append(f"The PCA and t-SNE figures of the test embeddings are left out: {spread}.")
    else:
        plots.plot_embedding(
            embeddings,
            labels,
            run_dir / "embedding_pca.png",
            class_names,
            method="pca",
            seed=cfg.seed,
        )
        figures.append(("Test embeddings, PCA", "embedding_pca.png"))
    if (
        spread is None
        and cfg.report.tsne
        and len(labels) <= cfg.report.tsne_max_points
        and len(labels) > 5
    ):
        plots.plot_embedding(
            embeddings,
            labels,
            run_dir / "embedding_tsne.png",
            class_names,
            method="tsne",
            seed=cfg.seed,
        )
        figures.append(("Test embeddings, t-SNE", "embedding_tsne.png"))
    curves = {
        name: curve
        for name, curve in (
            ("trained embedding", _curve(verification)),
            ("raw features", _curve(baseline_verification)),
        )
        if curve is not None
    }
    if curves:
        plots.plot_roc(curves, run_dir / "roc.png")
        figures.append(("Verification ROC on test pairs", "roc.png"))

    test = dict(summary.get("test", {}))
    base = dict(summary.get("baseline", {}))
    lines = [
        f"# tripletlab run `{cfg.name or run_dir.name}`",
        "",
        f"Dataset **{summary.get('dataset', cfg.data.dataset)}** ({cfg.data.split} split): "
        f"{summary.get('n_train')} train, {summary.get('n_val')} validation, "
        f"{summary.get('n_test')} test samples. Model `{cfg.model.name}` → "
        f"{cfg.model.embedding_dim}-D embedding"
        f"{' (L2-normalised)' if cfg.model.normalize else ''}; loss `{cfg.loss.name}` "
        f"(margin {cfg.loss.margin}, {cfg.loss.metric}); {cfg.optim.name} lr {cfg.optim.lr}, "
        f"{summary.get('epochs')} epochs of P×K = {cfg.train.p}×{cfg.train.k} batches "
        f"({summary.get('steps')} steps), seed {cfg.seed}.",
        "",
        *collapse_lines(summary),
        *outcome_lines(summary),
        "## Test metrics beside the raw-feature baseline",
        "",
        "Retrieval on the test split, every test sample a query against all the others "
        "(Musgrave et al. 2020 definitions). The baseline is the same evaluation on the raw "
        "input features: the gain column is what training bought.",
        "",
        metrics_table(test, base),
        "",
        *[
            f"n/a — {group} metrics: {reason}."
            for group, reason in dict(summary.get("unavailable", {})).items()
        ],
        "",
        f"Training took {summary.get('train_seconds', float('nan')):.1f} s "
        f"({summary.get('mean_epoch_seconds', float('nan')):.2f} s per epoch); "
        f"evaluation {summary.get('eval_seconds', float('nan')):.1f} s.",
        "",
        *provenance_lines(summary),
        "## Figures",
        "",
    ]
    for caption, name in figures:
        lines += [f"### {caption}", "", f"![{caption}]({name})", ""]
    lines += [*notes, ""] if notes else []
    lines += [
        "## Files",
        "",
        "`config.json` (resolved config), `metrics.json`, `steps.jsonl` / `epochs.jsonl` / "
        "`epochs.csv` (logs), `checkpoints/` (`last.pt`, `final.pt`), "
        "`test_embeddings.npz`.",
        "",
    ]
    return atomic_write_text(run_dir / "report.md", "\n".join(lines))
