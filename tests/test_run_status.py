"""Run directories: default names, no clobbering without --resume/--overwrite, status file."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tripletlab.errors import ConfigError, TripletlabError
from tripletlab.train.run_status import (
    STATUS_FILE,
    RunExistsError,
    RunNotCompletedError,
    RunStatus,
    claim_run_dir,
    default_run_name,
    read_status,
    require_completed,
    unique_run_dir,
)

WHEN = dt.datetime(2026, 11, 29, 13, 5, 9)


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        ("digits", "digits-mlp-batch-all-20261129-130509"),
        ("fashion-mnist", "fashion-mnist-mlp-batch-all-20261129-130509"),
        ("/data/Faces Set/", "faces-set-mlp-batch-all-20261129-130509"),
        ("./x/embeddings.npz", "embeddings-mlp-batch-all-20261129-130509"),
    ],
)
def test_default_name_comes_from_the_run(dataset: str, expected: str) -> None:
    assert default_run_name(dataset, "mlp", "batch-all", WHEN) == expected


def test_two_runs_without_out_get_two_directories(tmp_path: Path) -> None:
    name = default_run_name("digits", "mlp", "batch-all", WHEN)
    first = claim_run_dir(unique_run_dir(tmp_path, name))
    (first / "config.json").write_text("{}")
    second = claim_run_dir(unique_run_dir(tmp_path, name))
    assert first != second and second.name == name + "-2"
    (second / "config.json").write_text("{}")
    assert unique_run_dir(tmp_path, name).name == name + "-3"


def test_existing_run_is_not_replaced_without_overwrite(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with RunStatus(claim_run_dir(run)):
        (run / "metrics.json").write_text("{}")
    with pytest.raises(RunExistsError, match=r"already holds a run \(status: completed\)"):
        claim_run_dir(run)
    assert (run / "metrics.json").is_file()
    assert claim_run_dir(run, resume=True) == run and (run / "metrics.json").is_file()
    claim_run_dir(run, overwrite=True)
    assert list(run.iterdir()) == []


def test_empty_folder_is_usable_and_bad_combinations_are_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert claim_run_dir(tmp_path / "empty") == tmp_path / "empty"
    with pytest.raises(ConfigError, match="exclude each other"):
        claim_run_dir(tmp_path / "x", resume=True, overwrite=True)
    with pytest.raises(ConfigError, match="no run in"):
        claim_run_dir(tmp_path / "nothing", resume=True)
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is a file"):
        claim_run_dir(tmp_path / "file")


def test_failed_run_records_the_error_and_evaluate_says_so(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="boom"), RunStatus(tmp_path, ["tripletlab", "train"]):
        assert read_status(tmp_path)["state"] == "running"
        raise ValueError("boom\nsecond line")
    status = json.loads((tmp_path / STATUS_FILE).read_text())
    assert status["state"] == "failed"
    assert (status["error_type"], status["error"]) == ("ValueError", "boom")
    assert status["command"] == ["tripletlab", "train"]
    with pytest.raises(RunNotCompletedError, match=r"failed: ValueError: boom$") as info:
        require_completed(tmp_path)
    assert isinstance(info.value, TripletlabError)
    assert "\n" not in str(info.value)


def test_completed_run_and_a_folder_without_status_pass(tmp_path: Path) -> None:
    assert require_completed(tmp_path) == {}
    with RunStatus(tmp_path) as status:
        status.update(epoch=3, best_epoch=2)
    done = require_completed(tmp_path)
    assert done["state"] == "completed" and done["best_epoch"] == 2


def test_a_killed_run_reads_as_killed(tmp_path: Path) -> None:
    code = (
        "import os, signal, sys; from tripletlab.train.run_status import RunStatus; "
        "RunStatus(sys.argv[1]).start(); os.kill(os.getpid(), signal.SIGKILL)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, timeout=120)
    assert json.loads((tmp_path / STATUS_FILE).read_text())["state"] == "running"
    assert read_status(tmp_path)["state"] == "killed"
    with pytest.raises(RunNotCompletedError, match=r"killed.*--resume"):
        require_completed(tmp_path)
    resumed = RunStatus(tmp_path)  # --resume: remembers how the previous attempt ended
    assert resumed.record["resumed_from_state"] == "killed"


def test_status_write_is_atomic(tmp_path: Path, monkeypatch) -> None:
    status = RunStatus(tmp_path).start()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        status.complete()
    monkeypatch.undo()
    assert read_status(tmp_path)["state"] == "running"  # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATUS_FILE]  # no temp file left


def test_interrupt_is_recorded(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), RunStatus(tmp_path):
        raise KeyboardInterrupt
    assert read_status(tmp_path)["error"] == "interrupted (Ctrl-C)"
