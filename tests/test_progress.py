"""Progress: plain flushed lines off a terminal, tqdm bars on one (also with 0 columns)."""

from __future__ import annotations

import io
import os

import pytest
import torch

from tripletlab.train.progress import FALLBACK_COLUMNS, Progress, terminal_columns


class FlushCounting(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


class FakeTTY(io.StringIO):
    """A terminal of ``columns`` columns (0: a pty that reports no size)."""

    def __init__(self, columns: int) -> None:
        super().__init__()
        self.columns = columns

    def isatty(self) -> bool:
        return True


def _run_epochs(progress: Progress, epochs: int = 3, steps: int = 4) -> None:
    progress.phase("loading", "digits")
    progress.phase("training", f"{epochs} epochs")
    progress.start_training(epochs)
    for epoch in range(1, epochs + 1):
        progress.start_epoch(epoch, steps)
        for i in range(steps):
            progress.step(torch.tensor(1.0 / (epoch + i)))
        progress.end_epoch(
            {
                "epoch": epoch,
                "loss": 0.5 / epoch,
                "lr": 1e-3,
                "val_precision_at_1": 0.9,
                "val_map_at_r": 0.8,
                "epoch_seconds": 1.25,
            }
        )
    progress.phase("evaluating")
    progress.phase("writing the report")
    progress.close()


def test_piped_output_has_one_flushed_line_per_epoch_and_phase() -> None:
    out = FlushCounting()
    _run_epochs(Progress(out), epochs=3)
    lines = out.getvalue().splitlines()
    epoch_lines = [line for line in lines if "] epoch " in line]
    assert len(epoch_lines) == 3
    assert "epoch 2/3 loss 0.2500 lr 1.00e-03 val P@1 0.900 MAP@R 0.800 (1.2s)" in epoch_lines[1]
    assert len(lines) == 3 + 4  # three epochs, four phases, nothing else (no bar residue)
    assert "\r" not in out.getvalue()
    assert out.flushes >= len(lines)


def test_disabled_progress_prints_nothing_but_warnings() -> None:
    out = io.StringIO()
    progress = Progress(out, enabled=False)
    _run_epochs(progress)
    assert out.getvalue() == ""
    progress.warn("embedding collapse: d_an fell\n  - try: --lr")
    assert out.getvalue().splitlines()[0].endswith("WARNING: embedding collapse: d_an fell")
    assert "  - try: --lr" in out.getvalue()


@pytest.mark.parametrize("columns", [100, 0])
def test_terminal_shows_bars_with_loss_lr_and_validation(columns: int, monkeypatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(os, "get_terminal_size", lambda fd=None: os.terminal_size((columns, 24)))
    tty = FakeTTY(columns)
    tty.fileno = lambda: 2  # type: ignore[method-assign]
    _run_epochs(Progress(tty), epochs=2)
    text = tty.getvalue()
    assert "\r" in text  # drawn as a bar, redrawn in place
    final = text.split("\r")[-1].strip() or text.split("\r")[-2]
    assert "epochs" in text and "2/2" in text
    for shown in ("loss=0.2500", "lr=1.00e-03", "P@1=0.900", "MAP@R=0.800"):
        assert shown in text
    width = columns or FALLBACK_COLUMNS
    bar_lines = [seg for seg in text.replace("\n", "\r").split("\r") if "epochs" in seg]
    assert bar_lines and all(len(seg.rstrip()) <= width for seg in bar_lines)
    assert any("|" in seg for seg in bar_lines)  # a real bar, not just the counters
    assert "loading: digits" in text and "writing the report" in text
    assert final


def test_terminal_columns_falls_back_when_a_pty_reports_zero(monkeypatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(os, "get_terminal_size", lambda fd=None: os.terminal_size((0, 0)))
    tty = FakeTTY(0)
    tty.fileno = lambda: 2  # type: ignore[method-assign]
    assert terminal_columns(tty) == FALLBACK_COLUMNS
    monkeypatch.setenv("COLUMNS", "132")
    assert terminal_columns(tty) == 132


def test_step_loss_is_read_at_most_once_per_refresh_interval() -> None:
    class CountingLoss:
        reads = 0

        def item(self) -> float:
            CountingLoss.reads += 1
            return 0.5

    now = [0.0]
    progress = Progress(FakeTTY(80), terminal=True, refresh_seconds=1.0, clock=lambda: now[0])
    progress.start_training(1)
    progress.start_epoch(1, 10)
    monkey = CountingLoss()
    for i in range(10):
        now[0] = i * 0.25  # 2.25 s over 10 steps: reads at 0, 1 and 2 s
        progress.step(monkey)  # type: ignore[arg-type]
    progress.close()
    assert CountingLoss.reads == 3
