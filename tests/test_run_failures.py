"""Issue 9, group 3: anything a user or the machine can cause is one line and exit 2.

Bad checkpoints of every kind, a full disk (an injected ENOSPC at the moment a checkpoint,
the metrics or the report is written) and a read-only folder, ``--out`` naming a file, an
unknown or absent device, out-of-range seeds and thread counts, and a run too large for
the machine's memory. After a full disk nothing half-written remains and ``--resume``
finishes the run.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner, Result

from tiny_run import tiny_cli_args
from tripletlab import atomic
from tripletlab.cli import main
from tripletlab.pipeline import run_checks


def _one_line_exit_2(result: Result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output and "weights_only" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("trained")
    assert CliRunner().invoke(main, tiny_cli_args(folder)).exit_code == 0
    return folder / "run"


class _Evil:
    def __reduce__(self) -> tuple:
        return (os.system, ("touch /tmp/tripletlab-pwned",))


def _bad_checkpoints(good: Path) -> dict[str, bytes]:
    real = good.read_bytes()
    wrong = torch.load(good, weights_only=True)
    wrong["model"] = {k: torch.zeros(3) for k in wrong["model"]}
    wrong_path = good.parent / "wrong.pt"
    torch.save(wrong, wrong_path)
    empty_path = good.parent / "empty.pt"
    torch.save({}, empty_path)
    return {
        "zero-byte": b"",
        "truncated": real[: len(real) // 2],
        "random": os.urandom(4096),
        "empty dict": empty_path.read_bytes(),
        "wrong content": wrong_path.read_bytes(),
        "malicious": pickle.dumps(_Evil()),
    }


def test_bad_checkpoints_are_one_line_for_evaluate_embed_and_resume(
    trained: Path, tmp_path: Path
) -> None:
    bad = _bad_checkpoints(trained / "checkpoints" / "final.pt")
    samples = tmp_path / "x.npy"
    np.save(samples, np.zeros((2, 4), dtype=np.float32))
    for kind, content in bad.items():
        run = tmp_path / kind.replace(" ", "-")
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "final.pt").write_bytes(content)
        (run / "checkpoints" / "last.pt").write_bytes(content)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # torch's warnings would reach the user too
            line = _one_line_exit_2(CliRunner().invoke(main, ["evaluate", str(run)]))
        assert "checkpoint" in line, (kind, line)
        _one_line_exit_2(CliRunner().invoke(main, ["embed", str(run), str(samples), "-o",
                                                   str(tmp_path / "e.npy")]))  # fmt: skip
        _one_line_exit_2(
            CliRunner().invoke(main, [*tiny_cli_args(tmp_path), "--out", str(run), "--resume"])
        )
    assert not Path("/tmp/tripletlab-pwned").exists()


def _full_disk_at(monkeypatch: pytest.MonkeyPatch, name: str, nth: int = 1) -> None:
    """ENOSPC when the ``nth`` write of a file called ``name`` is flushed."""
    fsync, seen = os.fsync, []

    def failing(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        if Path(target).name.startswith(f".{name}."):
            seen.append(target)
            if len(seen) == nth:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", failing)


@pytest.mark.parametrize(
    ("name", "nth"), [("last.pt", 2), ("metrics.json", 1), ("report.md", 1), ("training.png", 1)]
)
def test_a_full_disk_is_one_line_leaves_nothing_corrupt_and_the_run_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, nth: int
) -> None:
    _full_disk_at(monkeypatch, name, nth)
    line = _one_line_exit_2(CliRunner().invoke(main, tiny_cli_args(tmp_path, report=True)))
    assert "No space left on device" in line and name in line
    run = tmp_path / "run"
    assert not list(run.rglob("*.tmp"))
    monkeypatch.undo()
    resumed = CliRunner().invoke(main, [*tiny_cli_args(tmp_path, report=True), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2
    assert (run / "report.md").read_text().startswith("# tripletlab run")


def test_a_read_only_output_folder_is_one_line(tmp_path: Path, monkeypatch) -> None:
    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", read_only)
    line = _one_line_exit_2(CliRunner().invoke(main, tiny_cli_args(tmp_path)))
    # the first file a run writes (its status) is named
    assert "Read-only file system" in line and "status.json" in line


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--seed", "-1"], "'seed'"),
        (["--seed", str(2**40)], "'seed'"),
        (["--threads", "100000"], "'train.threads'"),
        (["--embedding-dim", "0"], "'model.embedding_dim'"),
    ],
)
def test_out_of_range_flags_name_their_key(tmp_path: Path, flags: list[str], named: str) -> None:
    assert named in _one_line_exit_2(CliRunner().invoke(main, [*tiny_cli_args(tmp_path), *flags]))


@pytest.mark.parametrize("device", ["banana", "cuda", "cuda:7"])
def test_an_unknown_or_absent_device_is_one_line(tmp_path: Path, device: str) -> None:
    if device != "banana" and torch.cuda.is_available() and torch.cuda.device_count() > 7:
        pytest.skip("this machine has the device")
    config = tmp_path / "device.toml"
    config.write_text(f'[train]\ndevice = "{device}"\n')
    args = tiny_cli_args(tmp_path)
    args[args.index("--config") + 1] = str(config)
    assert "train.device" in _one_line_exit_2(CliRunner().invoke(main, args))


def test_out_naming_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    args = [*tiny_cli_args(tmp_path), "--out", str(tmp_path / "afile")]
    assert "not a directory" in _one_line_exit_2(CliRunner().invoke(main, args))


def test_a_run_larger_than_memory_is_refused_before_it_starts(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(run_checks, "available_memory", lambda: 16 * 10**9)
    args = [*tiny_cli_args(tmp_path), "--embedding-dim", "100000"]
    line = _one_line_exit_2(CliRunner().invoke(main, args))
    assert "the run needs at least" in line and "evaluation" in line
    assert not (tmp_path / "run" / "checkpoints").exists()
