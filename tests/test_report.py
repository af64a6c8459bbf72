"""Report figures and report.md from synthetic run data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tripletlab.pipeline.config import load_config
from tripletlab.report import plots
from tripletlab.report.markdown import metrics_table, write_report
from tripletlab.train.logging import RunLogger

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG and path.stat().st_size > 5000


def _blobs(n: int = 90, dim: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 3
    return rng.normal(size=(n, dim)) + 4 * np.eye(dim)[labels], labels


def test_metrics_table_orders_key_metrics_and_computes_gains() -> None:
    table = metrics_table(
        {"nmi": 0.5, "map_at_r": 0.9, "precision_at_1": 0.99, "n_queries": 10},
        {"nmi": 0.25, "map_at_r": 0.5, "precision_at_1": 0.97},
    ).splitlines()
    assert table[2].startswith("| precision@1 | 0.9900 | 0.9700 | +0.0200")
    assert table[3].startswith("| MAP@R | 0.9000 | 0.5000 | +0.4000")
    assert table[4].startswith("| NMI (k-means) | 0.5000 | 0.2500 | +0.2500")
    assert not any("n_queries" in line for line in table)  # counts are not metrics


def test_projections_are_two_dimensional_and_separate_blobs() -> None:
    x, labels = _blobs()
    for method in ("pca", "tsne"):
        points = plots.project_2d(x, method)
        assert points.shape == (len(x), 2)
        centres = np.stack([points[labels == c].mean(0) for c in range(3)])
        spread = max(points[labels == c].std() for c in range(3))
        gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1)[np.triu_indices(3, 1)]
        assert gaps.min() > spread
    assert plots.project_2d(x[:, :1]).shape == (len(x), 2)
    with pytest.raises(ValueError, match="method"):
        plots.project_2d(x, "umap")


def test_write_report_draws_every_figure(tmp_path: Path) -> None:
    x, labels = _blobs()
    with RunLogger(tmp_path, tensorboard=False) as log:
        log.log_steps(
            [
                {
                    "epoch": 1 + s // 5,
                    "step": s + 1,
                    "loss": 1 / (s + 1),
                    "active_fraction": 0.5,
                    "easy_fraction": 0.5,
                    "semi_hard_fraction": 0.3,
                    "hard_fraction": 0.2,
                }
                for s in range(10)
            ]
        )
    history = [
        {
            "epoch": e,
            "step": 5 * e,
            "loss": 0.5 / e,
            "val_precision_at_1": 0.8 + 0.05 * e,
            "val_map_at_r": 0.5 + 0.1 * e,
        }
        for e in (1, 2)
    ]
    fpr = np.linspace(0, 1, 50)
    summary = {
        "dataset": "blobs",
        "n_train": 10,
        "n_val": 0,
        "n_test": 90,
        "epochs": 2,
        "steps": 10,
        "train_seconds": 1.0,
        "mean_epoch_seconds": 0.5,
        "eval_seconds": 0.1,
        "test": {"precision_at_1": 1.0, "map_at_r": 0.95},
        "baseline": {"precision_at_1": 0.9, "map_at_r": 0.6},
    }
    cfg = load_config(None, {"name": "blobs-run"})
    path = write_report(
        tmp_path,
        cfg=cfg,
        summary=summary,
        history=history,
        embeddings=x,
        labels=labels,
        class_names=["a", "b", "c"],
        verification={"fpr": fpr, "tpr": np.sqrt(fpr), "auc": 0.66},
        baseline_verification={"fpr": fpr, "tpr": fpr, "auc": 0.5},
    )
    text = path.read_text()
    assert "# tripletlab run `blobs-run`" in text
    assert "| precision@1 | 1.0000 | 0.9000 | +0.1000" in text
    for name in ("training.png", "embedding_pca.png", "embedding_tsne.png", "roc.png"):
        assert f"]({name})" in text
        assert _is_png(tmp_path / name), name


def test_report_without_tsne_or_roc(tmp_path: Path) -> None:
    x, labels = _blobs()
    cfg = load_config(None, {"report.tsne": False})
    path = write_report(
        tmp_path,
        cfg=cfg,
        summary={"test": {}, "baseline": {}},
        history=[],
        embeddings=x,
        labels=labels,
    )
    text = path.read_text()
    assert "embedding_pca.png" in text
    assert "embedding_tsne.png" not in text and "roc.png" not in text
    assert not (tmp_path / "embedding_tsne.png").exists()
    assert _is_png(tmp_path / "training.png")  # empty logs still draw (empty) panels
