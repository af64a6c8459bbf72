"""Early stopping and best-checkpoint tracking: decisions, patience, resume, best.pt."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tripletlab.errors import ConfigError
from tripletlab.train.checkpoint import load_checkpoint, save_checkpoint
from tripletlab.train.early_stopping import EarlyStopping, monitor_key
from tripletlab.train.trainer import Trainer


def _feed(stopper: EarlyStopping, values: list[float | None]) -> list:
    decisions = []
    for epoch, value in enumerate(values, 1):
        record = {"epoch": epoch, "loss": 1.0}
        if value is not None:
            record["val_map_at_r"] = value
        decisions.append(stopper.update(record))
    return decisions


def test_max_mode_tracks_the_best_and_stops_after_patience() -> None:
    stopper = EarlyStopping("map_at_r", "max", patience=2)
    decisions = _feed(stopper, [0.5, 0.6, 0.55, 0.58])
    assert [d.improved for d in decisions] == [True, True, False, False]
    assert [d.stop for d in decisions] == [False, False, False, True]
    assert (stopper.best_epoch, stopper.best_value) == (2, 0.6)


def test_min_mode_and_min_delta() -> None:
    stopper = EarlyStopping("loss", "min", min_delta=0.1)
    for epoch, loss in enumerate([1.0, 0.95, 0.85, 0.9], 1):
        stopper.update({"epoch": epoch, "loss": loss})
    assert stopper.best_epoch == 3  # 0.95 is within min_delta of 1.0: no improvement


def test_without_patience_it_never_stops() -> None:
    stopper = EarlyStopping("map_at_r")
    assert not any(d.stop for d in _feed(stopper, [0.9] + [0.1] * 50))
    assert stopper.best_epoch == 1


def test_epochs_without_validation_do_not_use_patience() -> None:
    stopper = EarlyStopping("map_at_r", patience=2)
    decisions = _feed(stopper, [0.5, None, 0.4, None, None, 0.4])
    assert [d.evaluated for d in decisions] == [True, False, True, False, False, True]
    assert [d.stop for d in decisions] == [False] * 5 + [True]


def test_nan_never_improves() -> None:
    stopper = EarlyStopping("map_at_r", patience=1)
    decisions = _feed(stopper, [math.nan, 0.3])
    assert not decisions[0].improved and decisions[0].stop
    assert decisions[1].improved and stopper.best_epoch == 2


def test_misspelt_monitor_names_the_available_metrics() -> None:
    stopper = EarlyStopping("map_at_5")
    with pytest.raises(ConfigError, match=r"'map_at_5'.*map_at_r, precision_at_1"):
        stopper.update({"epoch": 1, "val_map_at_r": 0.5, "val_precision_at_1": 0.7})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"mode": "up"}, "mode"), ({"patience": 0}, "patience"), ({"min_delta": -1}, "min_delta")],
)
def test_bad_settings_are_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EarlyStopping(**kwargs)


def test_monitor_key() -> None:
    assert monitor_key("map_at_r") == "val_map_at_r"
    assert monitor_key("val_r_precision") == "val_r_precision"
    assert monitor_key("loss") == "loss"


def test_state_survives_a_weights_only_checkpoint(tmp_path: Path) -> None:
    stopper = EarlyStopping("map_at_r", patience=3)
    _feed(stopper, [0.5, 0.7, 0.6])
    save_checkpoint(tmp_path / "last.pt", {"early_stopping": stopper.state_dict()})
    resumed = EarlyStopping("map_at_r", patience=3)
    resumed.load_state_dict(load_checkpoint(tmp_path / "last.pt")["early_stopping"])
    assert (resumed.best_epoch, resumed.best_value) == (2, 0.7)
    # one used patience step carried over: two more non-improving epochs stop the run
    assert not resumed.update({"epoch": 4, "val_map_at_r": 0.6}).stop
    assert resumed.update({"epoch": 5, "val_map_at_r": 0.6}).stop
    other = EarlyStopping("precision_at_1")
    other.load_state_dict(stopper.state_dict())  # a different metric starts afresh
    assert other.best_epoch is None


def test_best_checkpoint_holds_the_best_epoch(tmp_path: Path) -> None:
    """The wiring the trainer uses: after each epoch, update; save best.pt on improvement."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(80, 6, generator=g)
    y = torch.arange(80) % 4
    model = torch.nn.Linear(6, 3)
    scores = iter([0.2, 0.9, 0.4, 0.5, 0.6])  # the validation metric of epochs 1..5

    def validate(trainer: Trainer) -> dict[str, float]:
        return {"map_at_r": next(scores)}

    def loss(e: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return e.square().mean()

    trainer = Trainer(
        model,
        loss,
        torch.optim.SGD(model.parameters(), lr=0.1),
        validate=validate,
        checkpoint_dir=tmp_path,
        progress=False,
    )
    stopper = EarlyStopping("map_at_r", patience=2)
    for epoch in range(1, 6):
        trainer.fit(x, y, epochs=epoch, p=4, k=4)
        decision = stopper.update(trainer.history[-1])
        if decision.improved:
            trainer.save("best.pt")
        if decision.stop:
            break
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == 2 == stopper.best_epoch
    assert best["history"][-1]["val_map_at_r"] == 0.9
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 4  # stopped after patience 2
