"""Issue 9, group 5: evaluation and report never lose computed results.

``metrics.json`` is written before the report; embeddings that cannot be projected (all
identical: t-SNE divides by their spread) leave the figures out with a note; a test split
with one class, or with no class of two samples, gets every metric it supports and ``n/a``
(null plus the reason) for the others — never a crash after training.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner

from tiny_run import tiny_cli_args
from tripletlab.cli import main
from tripletlab.pipeline.config import load_config
from tripletlab.pipeline.evaluation import embedding_metrics, unavailable_metrics
from tripletlab.report import plots


def test_metrics_are_written_before_the_report_so_a_failing_report_loses_none(
    tmp_path: Path, monkeypatch
) -> None:
    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "training.png")

    monkeypatch.setattr(plots, "save_figure", full_disk)
    result = CliRunner().invoke(main, tiny_cli_args(tmp_path, report=True))
    assert result.exit_code == 2
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0 <= metrics["test"]["precision_at_1"] <= 1
    assert not (tmp_path / "run" / "report.md").exists()


def test_identical_embeddings_leave_the_projections_out_with_a_note(tmp_path: Path) -> None:
    labels = np.repeat(np.arange(4), 12)
    np.savez(tmp_path / "tiny.npz", features=np.ones((48, 4)), labels=labels)  # constant
    args = tiny_cli_args(tmp_path, report=True)
    config = Path(args[args.index("--config") + 1])
    config.write_text(config.read_text().replace("tsne = false", "tsne = true"))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    report = (run / "report.md").read_text()
    assert "left out: all 8 test embeddings are identical" in report
    assert not (run / "embedding_tsne.png").exists()
    assert "precision_at_1" in json.loads((run / "metrics.json").read_text())["test"]


def test_a_test_split_of_single_sample_classes_gets_its_metrics_and_n_a_with_reasons(
    tmp_path: Path,
) -> None:
    labels = np.repeat(np.arange(16), 3)  # a stratified split leaves one sample a class
    features = np.random.default_rng(0).normal(size=(48, 4)) + labels[:, None]
    np.savez(tmp_path / "tiny.npz", features=features, labels=labels)
    result = CliRunner().invoke(main, tiny_cli_args(tmp_path, report=True))
    assert result.exit_code == 0, result.output
    assert "retrieval metrics n/a: no class of the split has 2 samples" in result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test"]["map_at_r"] is None and metrics["test"]["verification_auc"] is None
    assert 0 <= metrics["test"]["nmi"] <= 1  # clustering needs only two classes
    assert metrics["unavailable"]["verification"].endswith("no positive pairs")
    report = (tmp_path / "run" / "report.md").read_text()
    assert "| MAP@R | n/a | n/a | – |" in report
    assert "n/a — retrieval metrics: no class of the split has 2 samples" in report


def test_a_split_of_one_class_gets_retrieval_and_null_clustering_with_reasons() -> None:
    x, y = torch.randn(6, 3), torch.zeros(6, dtype=torch.long)
    metrics, curve = embedding_metrics(x, y, load_config(), full=True)
    assert metrics["precision_at_1"] == 1.0  # every neighbour is of the one class
    assert metrics["nmi"] is None and metrics["verification_auc"] is None and curve is None
    assert unavailable_metrics(y) == {
        "clustering": "the split has 1 class; clustering needs at least 2",
        "verification": "the split has 1 class; no negative pairs",
    }


def test_single_sample_classes_get_null_retrieval_and_verification_with_reasons() -> None:
    x, y = torch.randn(6, 3), torch.arange(6)
    metrics, curve = embedding_metrics(x, y, load_config(), full=True)
    assert metrics["map_at_r"] is None and metrics["recall_at_1"] is None
    assert metrics["verification_auc"] is None and curve is None
    assert metrics["nmi"] is not None
    assert set(unavailable_metrics(y)) == {"retrieval", "verification"}
