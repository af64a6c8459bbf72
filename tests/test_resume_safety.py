"""Issue 9, group 2: a resumed run never loses or mixes data.

In-process runs on a tiny .npz dataset (a second or two each): atomic log rewrites, stale
temporary checkpoints, the config and data fingerprints checked on ``--resume``, the run
directory's lock, and Ctrl-C (exit 130, resumable).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from tiny_run import tiny_cli_args as _cli_args
from tiny_run import tiny_dataset as _dataset
from tiny_run import tiny_flags as _flags
from tripletlab import atomic
from tripletlab.cli import main
from tripletlab.errors import ConfigError
from tripletlab.pipeline import training
from tripletlab.pipeline.config import load_config
from tripletlab.pipeline.run_lock import RunLock, RunLockedError
from tripletlab.pipeline.training import run_training
from tripletlab.train.logging import RunLogger, read_jsonl
from tripletlab.train.trainer import Trainer


def test_a_kill_while_the_logs_are_cut_back_loses_no_record(tmp_path: Path, monkeypatch) -> None:
    with RunLogger(tmp_path, tensorboard=False) as log:
        log.log_steps([{"epoch": e, "step": s, "loss": 1.0} for e in (1, 2) for s in range(50)])
        log.log_epoch({"epoch": 1, "loss": 1.0})
        log.log_epoch({"epoch": 2, "loss": 1.0})

    def killed(*args: object) -> None:  # the process dies before the new file replaces the old
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        RunLogger(tmp_path, tensorboard=False).truncate(last_epoch=1)
    assert len(read_jsonl(tmp_path / "steps.jsonl")) == 100
    assert not list(tmp_path.glob(".*.tmp"))
    monkeypatch.undo()
    RunLogger(tmp_path, tensorboard=False).truncate(last_epoch=1)
    assert len(read_jsonl(tmp_path / "steps.jsonl")) == 50


def test_a_later_run_removes_the_temporary_checkpoints_a_kill_left(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / ".last.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
    model = torch.nn.Linear(3, 2)
    trainer = Trainer(
        model, lambda e, y: e.sum() * 0, torch.optim.SGD(model.parameters(), lr=0.1),
        checkpoint_dir=checkpoints, progress=False,
    )  # fmt: skip
    trainer.fit(torch.randn(12, 3), torch.arange(12) % 3, epochs=1, p=3, k=2)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["final.pt", "last.pt"]


def test_a_resume_removes_the_temporary_files_a_kill_left_in_the_run_directory(
    tmp_path: Path,
) -> None:
    run_training(load_config(None, _flags(tmp_path)))
    run = tmp_path / "run"
    (run / ".metrics.json.k1ll.tmp").write_text("{")
    (run / "checkpoints" / ".last.pt.k1ll.tmp").write_bytes(b"half")
    run_training(load_config(None, _flags(tmp_path)), resume=True)
    assert not list(run.rglob("*.tmp"))


def test_resume_refuses_changed_settings_and_extends_epochs_only_when_asked(
    tmp_path: Path,
) -> None:
    run_training(load_config(None, _flags(tmp_path)))
    with pytest.raises(ConfigError, match=r"loss.margin \(run: 0.2, given: 0.5\)"):
        run_training(load_config(None, _flags(tmp_path, **{"loss.margin": 0.5})), resume=True)
    with pytest.raises(ConfigError, match="add --extend"):
        run_training(load_config(None, _flags(tmp_path, **{"train.epochs": 3})), resume=True)
    same = run_training(load_config(None, _flags(tmp_path)), resume=True)
    assert len(same.history) == 2
    extended = run_training(
        load_config(None, _flags(tmp_path, **{"train.epochs": 3})), resume=True, extend=True
    )
    assert len(extended.history) == 3
    assert len(read_jsonl(tmp_path / "run" / "epochs.jsonl")) == 3


def test_resume_refuses_changed_data(tmp_path: Path) -> None:
    run_training(load_config(None, _flags(tmp_path)))
    _dataset(tmp_path, shift=0.5)
    with pytest.raises(ConfigError, match="differs from the data the run was trained on"):
        run_training(load_config(None, _flags(tmp_path)), resume=True)


def test_a_second_run_in_a_locked_directory_gets_one_line_naming_the_holder(
    tmp_path: Path,
) -> None:
    with RunLock(tmp_path / "run"):
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()} on "):
            run_training(load_config(None, _flags(tmp_path)))
        result = CliRunner().invoke(main, _cli_args(tmp_path))
    assert result.exit_code == 2
    assert "is in use by another process (pid" in result.output
    assert "Traceback" not in result.output
    assert CliRunner().invoke(main, _cli_args(tmp_path)).exit_code == 0  # released


@pytest.mark.parametrize("swallowed", [False, True])
def test_ctrl_c_in_the_final_evaluation_exits_130_and_the_run_resumes(
    tmp_path: Path, monkeypatch, swallowed: bool
) -> None:
    evaluate = training.evaluate_test

    def interrupted(*args: object) -> object:
        try:
            os.kill(os.getpid(), signal.SIGINT)  # a real SIGINT, as from the terminal
        except KeyboardInterrupt:
            if not swallowed:
                raise
        return evaluate(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(training, "evaluate_test", interrupted)
    result = CliRunner().invoke(main, _cli_args(tmp_path))
    assert result.exit_code == 130
    assert "interrupted" in result.output
    assert not (tmp_path / "run" / "metrics.json").exists()
    monkeypatch.undo()
    resumed = CliRunner().invoke(main, [*_cli_args(tmp_path), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"] == 2


def test_ctrl_c_during_training_exits_130_and_keeps_a_checkpoint(
    tmp_path: Path, monkeypatch
) -> None:
    step = Trainer.train_step

    def interrupted(self: Trainer, *args: object, **kwargs: object) -> object:
        if self.epoch == 2:
            raise KeyboardInterrupt
        return step(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    result = CliRunner().invoke(main, _cli_args(tmp_path))
    assert result.exit_code == 130
    monkeypatch.undo()
    resumed = CliRunner().invoke(main, [*_cli_args(tmp_path), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert [r["epoch"] for r in read_jsonl(tmp_path / "run" / "epochs.jsonl")] == [1, 2]
