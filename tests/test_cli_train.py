"""`tripletlab train / evaluate / embed` as a user runs them: subprocesses on tiny data.

The resume test kills a training process for real (SIGKILL, mid-epoch, via the config's
``train.kill_after_steps`` hook) and checks that ``--resume`` ends with exactly the metrics
of an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TINY = """
name = "tiny"
seed = 3
[data]
max_samples = 300
[model]
embedding_dim = 8
hidden = [32]
[train]
epochs = 3
p = 5
k = 4
[report]
tsne = false
"""


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "tripletlab.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def _config(folder: Path, extra: str = "", report: bool = True) -> Path:
    path = folder / "tiny.toml"
    text = TINY + extra
    if not report:
        text = text.replace("[report]\n", "[report]\nenabled = false\n")
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def finished_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess]:
    folder = tmp_path_factory.mktemp("cli")
    result = _cli("train", "--config", str(_config(folder)), "--out", "full", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder / "full", result


def test_train_writes_the_run_directory(finished_run) -> None:
    run, result = finished_run
    for name in (
        "config.json",
        "metrics.json",
        "steps.jsonl",
        "epochs.jsonl",
        "epochs.csv",
        "report.md",
        "training.png",
        "embedding_pca.png",
        "roc.png",
        "checkpoints/last.pt",
        "checkpoints/final.pt",
    ):
        assert (run / name).is_file(), name
    assert not (run / "embedding_tsne.png").exists()  # report.tsne = false was honoured
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["max_samples"] == 300 and config["train"]["epochs"] == 3
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["n_test"] == 60
    for key in ("precision_at_1", "map_at_r", "r_precision", "nmi", "verification_auc"):
        assert 0.0 <= metrics["test"][key] <= 1.0
        assert key in metrics["baseline"]
    steps = [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]
    assert len(steps) == metrics["steps"]
    assert {"loss", "active_fraction", "hard_fraction", "semi_hard_fraction"} <= set(steps[0])
    assert f"report: {run.name}/report.md" in result.stdout.replace(str(run.parent) + "/", "")
    assert "map_at_r" in result.stdout and "baseline" in result.stdout
    assert "![" in (run / "report.md").read_text()


def test_evaluate_and_embed_a_finished_run(finished_run) -> None:
    run, _ = finished_run
    evaluated = _cli("evaluate", str(run), "--json", cwd=run.parent)
    assert evaluated.returncode == 0, evaluated.stderr
    found = json.loads(evaluated.stdout)
    saved = json.loads((run / "metrics.json").read_text())
    # Re-evaluating the saved model on the same split reproduces the run's numbers.
    for key in ("precision_at_1", "map_at_r", "r_precision"):
        assert found["metrics"][key] == pytest.approx(saved["test"][key], abs=1e-9)
        assert found["baseline"][key] == pytest.approx(saved["baseline"][key], abs=1e-9)

    from sklearn.datasets import load_digits

    images = load_digits().images[:7].astype(np.float32) / 16.0  # the loader's [0, 1] scale
    np.save(run.parent / "input.npy", images)
    embedded = _cli("embed", str(run), "input.npy", "-o", "out/emb.npy", cwd=run.parent)
    assert embedded.returncode == 0, embedded.stderr
    emb = np.load(run.parent / "out" / "emb.npy")
    assert emb.shape == (7, 8) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_resume_after_a_kill_reaches_the_uninterrupted_metrics(
    tmp_path: Path, finished_run
) -> None:
    run, _ = finished_run
    config = _config(tmp_path, report=False)
    killed_config = tmp_path / "killed.toml"
    # 300 samples → 192 train → 10 batches of ≤ 20 per epoch: step 14 is inside epoch 2.
    killed_config.write_text(
        config.read_text().replace("[train]\n", "[train]\nkill_after_steps = 14\n")
    )
    killed = _cli("train", "--config", str(killed_config), "--out", "cut", cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL
    assert (tmp_path / "cut" / "checkpoints" / "last.pt").is_file()
    assert not (tmp_path / "cut" / "metrics.json").exists()

    resumed = _cli("train", "--config", str(config), "--out", "cut", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    full = json.loads((run / "metrics.json").read_text())
    cut = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert cut["test"] == full["test"]  # exactly equal, not approximately
    assert cut["steps"] == full["steps"]

    def losses(folder: Path) -> list[tuple[int, float]]:
        lines = (folder / "steps.jsonl").read_text().splitlines()
        return [(r["step"], r["loss"]) for r in map(json.loads, lines)]

    assert losses(tmp_path / "cut") == losses(run)  # logs cut back to the checkpoint, no gaps


def test_user_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepochs = 'ten'\n")
    result = _cli("train", "--config", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "train.epochs" in result.stderr and "integer" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_data_and_flags_exit_2_in_process(tmp_path: Path, monkeypatch) -> None:
    # The same error path as above, in-process (click's runner) to keep the suite fast.
    from click.testing import CliRunner

    from tripletlab.cli import main

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    missing = runner.invoke(main, ["train", "--dataset", "no/such/data.npz", "--epochs", "1"])
    assert missing.exit_code == 2
    assert "no/such/data.npz" in missing.output
    assert "Traceback" not in missing.output
    resume = runner.invoke(main, ["train", "--out", "nothing-here", "--resume"])
    assert resume.exit_code == 2
    assert "no run in" in resume.output
    not_a_run = runner.invoke(main, ["evaluate", str(tmp_path)])
    assert not_a_run.exit_code == 2
    assert "no checkpoint" in not_a_run.output
