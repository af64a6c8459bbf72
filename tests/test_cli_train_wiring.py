"""Issues 11 and 12 through the CLI: ``tripletlab train`` on a tiny photo folder with a saved
transformers ResNet and with a module:factory model, default run names that never clobber,
--overwrite/--resume, the status file, progress lines off a terminal, best.pt and early
stopping, the collapse alarm, --xbm-size, offline mining, the report's provenance and
``tripletlab config``."""

from __future__ import annotations

import json
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from hf_fixtures import save_tiny_hf_model
from image_fixtures import make_image_folder
from tripletlab.cli import main
from tripletlab.pipeline.config import RunConfig, load_config
from tripletlab.train.run_status import read_status

FAST = ["--epochs", "2", "--max-samples", "300", "--threads", "1"]


def _run(args: list[str], cwd: Path) -> object:
    import os

    runner = CliRunner()

    old = os.getcwd()
    os.chdir(cwd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return runner.invoke(main, args, catch_exceptions=False)
    finally:
        os.chdir(old)


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("photos"), n_classes=4, per_class=12)


@pytest.fixture(scope="module")
def resnet_dir(tmp_path_factory):
    return save_tiny_hf_model(tmp_path_factory.mktemp("models") / "tiny-resnet", "resnet")


def test_train_hf_resnet_on_a_photo_folder_end_to_end(photo_dir, resnet_dir, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--dataset", str(photo_dir), "--model", f"hf:{resnet_dir}"]
    args += ["--image-size", "32", "--epochs", "2", "--p", "2", "--k", "3", "--out", str(out)]
    args += ["--augment", "light", "--freeze-epochs", "1", "--warmup-epochs", "1"]
    args += ["--backbone-lr-mult", "0.1", "--pooling", "gem", "--bnneck", "--device", "cpu"]
    result = _run(args, tmp_path)
    assert result.exit_code == 0, result.output
    assert "precision_at_1" in result.output
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["epochs"] == 2 and 0.0 <= summary["test"]["map_at_r"] <= 1.0
    assert read_status(out)["state"] == "completed"
    assert (out / "report.md").is_file()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["pooling"] == "gem" and cfg["data"]["image_size"] == 32
    # the trained run reloads from its checkpoint (map_location, pretrained=False)
    from tripletlab.pipeline.trained import TrainedModel

    trained = TrainedModel.load(out)
    assert trained.in_shape[0] == 3 and trained.meta["streamed"] is True
    evaluated = _run(["evaluate", str(out), "--json"], tmp_path)
    assert evaluated.exit_code == 0, evaluated.output
    again = json.loads(evaluated.stdout)["metrics"]["map_at_r"]
    assert again == pytest.approx(summary["test"]["map_at_r"], abs=1e-4)


def test_train_a_module_factory_model(photo_dir, tmp_path, monkeypatch):
    (tmp_path / "my_factory_models.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def tiny_cnn():
                return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "factory-run"
    args = ["train", "--dataset", str(photo_dir), "--model", "my_factory_models:tiny_cnn"]
    args += ["--image-size", "24,32", "--epochs", "2", "--p", "2", "--k", "3"]
    args += ["--out", str(out), "--embedding-dim", "8"]
    try:
        result = _run(args, tmp_path)
    finally:
        sys.modules.pop("my_factory_models", None)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["epochs"] == 2


def test_missing_device_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["train", "--device", "cuda:7"])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "not available" in result.output


def test_two_runs_without_out_get_two_directories(tmp_path):
    first = _run(["train", *FAST], tmp_path)
    second = _run(["train", *FAST], tmp_path)
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(runs) == 2
    assert all(name.startswith("digits-mlp-batch-all-") for name in runs)
    report = (tmp_path / "runs" / runs[0] / "report.md").read_text()
    assert f"`{runs[0]}`" in report  # the title is the directory's name


def test_existing_run_needs_overwrite_or_resume(tmp_path):
    out = str(tmp_path / "r")
    assert _run(["train", *FAST, "--out", out], tmp_path).exit_code == 0
    again = _run(["train", *FAST, "--out", out], tmp_path)
    assert again.exit_code == 2 and "--overwrite" in again.output
    assert _run(["train", *FAST, "--out", out, "--overwrite"], tmp_path).exit_code == 0


def test_failed_run_is_marked_and_evaluate_says_so(tmp_path):
    out = tmp_path / "bad"
    result = _run(["train", *FAST, "--out", str(out), "--monitor", "no_such_metric"], tmp_path)
    assert result.exit_code == 2 and "no_such_metric" in result.output
    status = read_status(out)
    assert status["state"] == "failed" and status["error_type"] == "ConfigError"
    evaluated = _run(["evaluate", str(out)], tmp_path)
    assert evaluated.exit_code == 2
    assert "failed" in evaluated.output and evaluated.output.count("\n") == 1


def test_piped_progress_has_one_line_per_epoch_and_phases(tmp_path):
    result = _run(["train", *FAST, "--epochs", "3", "--out", str(tmp_path / "p")], tmp_path)
    assert result.exit_code == 0
    lines = result.stderr.splitlines() if hasattr(result, "stderr") else result.output.splitlines()
    epoch_lines = [line for line in lines if "] epoch " in line]
    assert len(epoch_lines) == 3 and "val" in epoch_lines[-1]
    for phase in ("loading", "training", "evaluating", "writing the report"):
        assert any(f"] {phase}" in line for line in lines), phase


def test_best_checkpoint_and_early_stopping(tmp_path):
    out = tmp_path / "es"
    args = ["train", *FAST, "--epochs", "6", "--out", str(out), "--monitor", "loss"]
    args += ["--monitor-mode", "max", "--patience", "1"]  # loss falls: stops after epoch 2
    result = _run(args, tmp_path)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["stopped_early"] and summary["epochs"] == 2
    assert summary["best_epoch"] == 1 and summary["evaluated_checkpoint"] == "best.pt"
    import torch

    best = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    assert best["epoch"] == 1
    assert "Best epoch 1 of 2" in (out / "report.md").read_text()


def test_collapse_alarm_reaches_log_and_report(tmp_path):
    # batch-hard on squared distances of normalised embeddings with a high lr: collapses
    (tmp_path / "c.toml").write_text("[model]\nnormalize = true\n")
    out = tmp_path / "collapse"
    args = ["train", "--config", str(tmp_path / "c.toml"), "--epochs", "2", "--threads", "1"]
    args += ["--out", str(out), "--loss", "batch-hard", "--metric", "sqeuclidean"]
    args += ["--margin", "0.2", "--smoothing", "0", "--lr", "0.05", "--p", "8", "--k", "4"]
    result = _run(args, tmp_path)
    assert result.exit_code == 0, result.output
    assert "WARNING: embedding collapse" in result.output
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["collapse"] is not None
    assert "embedding collapse" in (out / "steps.jsonl").read_text()
    assert "Warning — embedding collapse" in (out / "report.md").read_text()
    stopped = _run([*args, "--overwrite", "--stop-on-collapse"], tmp_path)
    assert stopped.exit_code == 2 and "collapse" in stopped.output
    assert read_status(out)["state"] == "failed"
    assert not (out / "checkpoints" / "final.pt").exists()


def test_healthy_run_raises_no_alarm(tmp_path):
    out = tmp_path / "ok"
    assert _run(["train", *FAST, "--epochs", "3", "--out", str(out)], tmp_path).exit_code == 0
    assert json.loads((out / "metrics.json").read_text())["collapse"] is None


def test_xbm_and_offline_mining_from_the_cli(tmp_path):
    for extra, name in ((["--xbm-size", "64"], "xbm"), (["--mining", "offline"], "off")):
        result = _run(["train", *FAST, "--out", str(tmp_path / name), *extra], tmp_path)
        assert result.exit_code == 0, result.output
    steps = (tmp_path / "off" / "steps.jsonl").read_text()
    assert '"triplets"' in steps  # offline-mined batches log their triplet count


def test_offline_mining_over_a_streamed_folder(photo_dir, tmp_path):
    out = tmp_path / "stream-off"
    args = ["train", "--dataset", str(photo_dir), "--stream", "yes", "--model", "cnn"]
    args += ["--image-size", "16", "--epochs", "2", "--p", "2", "--k", "3", "--out", str(out)]
    args += ["--mining", "offline"]
    result = _run(args, tmp_path)
    assert result.exit_code == 0, result.output
    assert '"triplets"' in (out / "steps.jsonl").read_text()


def test_report_states_provenance(tmp_path):
    out = tmp_path / "prov"
    assert _run(["train", *FAST, "--out", str(out), "--seed", "5"], tmp_path).exit_code == 0
    prov = json.loads((out / "metrics.json").read_text())["provenance"]
    assert prov["world_size"] == 1 and prov["global_batch"] == 80 and prov["seed"] == 5
    assert "torch" in prov["versions"] and prov["wall_seconds"] > 0
    report = (out / "report.md").read_text()
    for text in ("world size 1", "global batch 80", "torch ", "seed 5", "threshold"):
        assert text in report, text


def test_per_loss_defaults():
    hard = load_config(None, {"loss.name": "batch-hard"})
    assert (hard.loss.metric, hard.loss.margin, hard.loss.smoothing) == ("euclidean", 0.0, 1.0)
    assert hard.model.normalize is False
    assert load_config(None, {"loss.name": "contrastive"}).loss.margin == 1.0
    kept = RunConfig()
    assert (kept.loss.metric, kept.loss.margin, kept.model.normalize) == ("sqeuclidean", 0.2, True)
    user = load_config(None, {"loss.name": "batch-hard", "loss.metric": "sqeuclidean"})
    assert user.loss.metric == "sqeuclidean" and user.loss.smoothing == 1.0


def test_config_command_lists_every_key_and_writes_toml(tmp_path):
    from tripletlab.commands.config import config_rows

    result = CliRunner().invoke(main, ["config", "--toml", str(tmp_path / "c.toml")])
    assert result.exit_code == 0, result.output
    keys = [row[0] for row in config_rows(RunConfig())]
    for key in keys:
        assert key in result.output, key
    assert {"train.mining", "loss.xbm_size", "augment.preset", "train.patience"} <= set(keys)
    assert all(row[4] for row in config_rows(RunConfig())), "every key has a description"
    reread = load_config(tmp_path / "c.toml")
    assert reread == RunConfig()
