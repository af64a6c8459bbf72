"""Checkpoints: atomic writes, weights_only loading, RNG round trips, exact resume."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from tripletlab.pipeline.factories import build_optimizer, build_scheduler
from tripletlab.train.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from tripletlab.train.trainer import Trainer


def test_atomic_write_keeps_old_file_when_save_fails(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1, "w": torch.ones(3)})

    def broken_save(obj, handle):
        handle.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"epoch": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["epoch"] == 1
    assert torch.equal(state["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left


def test_rng_state_round_trip_through_weights_only_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    np.random.seed(2)  # noqa: NPY002 - the global RNG is what the checkpoint must restore
    random.seed(3)
    save_checkpoint(tmp_path / "rng.pt", {"rng": capture_rng_state()})
    expected = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    assert torch.equal(expected[0], got[0])
    assert np.array_equal(expected[1], got[1])
    assert expected[2] == got[2]


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")


def _blobs(
    n_classes: int = 4, per_class: int = 16, dim: int = 6
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(n_classes, dim, generator=g) * 2
    y = torch.arange(n_classes).repeat_interleave(per_class)
    return centres[y] + torch.randn(len(y), dim, generator=g), y


def _trainer(tmp_path: Path, optimizer: str) -> Trainer:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(16, 4)
    )
    opt = build_optimizer(optimizer, model.parameters(), lr=0.05)
    sched = build_scheduler("step", opt, epochs=4, step_size=1, gamma=0.5)

    def loss(e, labels):
        d = torch.cdist(e, e)
        same = labels[:, None] == labels[None, :]
        return (d * same).mean() - (d * ~same).clamp(max=2).mean()

    return Trainer(
        model, loss, opt, scheduler=sched, checkpoint_dir=tmp_path, seed=5, progress=False
    )


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_resume_from_checkpoint_equals_uninterrupted(tmp_path: Path, optimizer: str) -> None:
    x, y = _blobs()
    full = _trainer(tmp_path / "full", optimizer)
    full.fit(x, y, epochs=4, p=2, k=4)

    first = _trainer(tmp_path / "cut", optimizer)
    first.fit(x, y, epochs=2, p=2, k=4)  # stops after epoch 2 ("killed" there)
    torch.manual_seed(123)  # scramble the RNGs: resume must restore them
    np.random.seed(7)  # noqa: NPY002
    resumed = _trainer(tmp_path / "cut", optimizer)
    resumed.fit(x, y, epochs=4, p=2, k=4, resume_from=tmp_path / "cut" / "last.pt")

    assert resumed.epoch == full.epoch == 4
    assert resumed.global_step == full.global_step
    for a, b in zip(
        full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    state = load_checkpoint(tmp_path / "cut" / "final.pt")  # weights_only=True inside
    assert state["epoch"] == 4
    assert state["scheduler"]["last_epoch"] == 4
