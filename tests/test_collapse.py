"""Collapse detection: synthetic step streams, the collapse value of each loss, resume state,
and real Trainer runs on digits (one collapsing on purpose, one training well)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tripletlab import BatchAllTripletLoss, BatchContrastiveLoss, BatchHardTripletLoss
from tripletlab.errors import TripletlabError
from tripletlab.train.checkpoint import load_checkpoint, save_checkpoint
from tripletlab.train.collapse import (
    CollapseDetector,
    TrainingCollapsed,
    collapsed_loss_value,
    likely_fixes,
)
from tripletlab.train.logging import RunLogger, read_jsonl
from tripletlab.train.threads import torch_threads
from tripletlab.train.trainer import Trainer

LABELS = torch.arange(32) % 8


def _healthy(step: int) -> dict[str, float]:
    return {
        "loss": 0.15 + 0.05 * math.sin(step),
        "active_fraction": 0.4,
        "mean_d_ap": 0.3,
        "mean_d_an": 1.2,
    }


def _collapsing(step: int) -> dict[str, float]:
    scale = 1.0 if step < 5 else 1e-4
    return {"loss": 0.2, "active_fraction": 1.0, "mean_d_ap": scale, "mean_d_an": 2 * scale}


def test_healthy_stream_raises_nothing() -> None:
    detector = CollapseDetector(0.2, window=5)
    assert detector.update_many(_healthy(i) for i in range(200)) is None
    assert detector.alarm is None and not detector.should_stop


def test_vanishing_distances_raise_after_the_window() -> None:
    detector = CollapseDetector(None, window=10, reference_steps=5)
    alarms = [detector.update(_collapsing(i)) for i in range(30)]
    first = next(i for i, a in enumerate(alarms) if a is not None)
    assert first == 5 + 10 - 1  # 5 reference steps, then 10 vanished steps
    assert detector.alarm is not None and detector.alarm.kind == "distances_vanished"
    assert detector.alarm.reference_d_an == pytest.approx(2.0)
    assert "fell to" in detector.alarm.summary()
    assert sum(a is not None for a in alarms) == 1  # the first alarm is kept, not repeated


def test_loss_pinned_without_distances() -> None:
    # the contrastive loss reports no distances: loss + active fraction decide alone
    detector = CollapseDetector(0.04, collapsed_active=0.8, window=4)
    for _ in range(3):
        assert detector.update({"loss": 0.04, "active_fraction": 0.8}) is None
    alarm = detector.update({"loss": 0.0401, "active_fraction": 0.79})
    assert alarm is not None and alarm.kind == "loss_at_collapse_value"


def test_pinned_run_is_reset_by_one_healthy_step() -> None:
    detector = CollapseDetector(0.2, window=3)
    stream = [0.2, 0.2, 0.35, 0.2, 0.2]  # never three in a row
    for value in stream:
        detector.update({"loss": value, "active_fraction": 1.0})
    assert detector.alarm is None


def test_pinned_loss_with_large_distances_is_not_collapse() -> None:
    # a smooth loss near its collapse value while d_an keeps its scale: not collapsed
    detector = CollapseDetector(math.log(2), window=3, reference_steps=2)
    for _ in range(20):
        detector.update(
            {"loss": math.log(2), "active_fraction": 1.0, "mean_d_ap": 0.6, "mean_d_an": 0.6}
        )
    assert detector.alarm is None


def test_non_finite_loss_alarms_at_once() -> None:
    detector = CollapseDetector(0.2)
    assert detector.update({"loss": float("nan")}) is not None
    assert detector.alarm is not None and detector.alarm.kind == "non_finite_loss"


def test_stop_request_raises_a_tripletlab_error() -> None:
    detector = CollapseDetector(None, window=2, reference_steps=1, stop=True)
    detector.raise_if_stopping()  # nothing yet
    detector.update_many(_collapsing(i) for i in range(10))
    assert detector.should_stop
    with pytest.raises(TrainingCollapsed, match="embedding collapse") as info:
        detector.raise_if_stopping()
    assert isinstance(info.value, TripletlabError)
    assert info.value.alarm is detector.alarm


def test_record_without_loss_is_a_bug() -> None:
    with pytest.raises(KeyError, match="loss"):
        CollapseDetector().update({"active_fraction": 1.0})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"window": 0}, "window"), ({"distance_ratio": 1.5}, "distance_ratio")],
)
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CollapseDetector(**kwargs)


def test_collapsed_loss_value_of_each_loss() -> None:
    assert collapsed_loss_value(BatchAllTripletLoss(margin=0.3), LABELS) == pytest.approx((0.3, 1))
    soft = BatchHardTripletLoss(margin=0.0, smoothing=1.0, metric="euclidean")
    assert collapsed_loss_value(soft, LABELS)[0] == pytest.approx(math.log(2), abs=1e-6)
    # Hadsell: positives cost d² = 0 (inactive), negatives m² (active): 7/8 of all pairs... per
    # anchor 28 negatives of 31 others
    value, active = collapsed_loss_value(
        BatchContrastiveLoss(margin=0.5, reduction="mean_active", return_stats=True), LABELS
    )
    assert value == pytest.approx(0.25)
    assert active == pytest.approx(28 / 31)


def test_collapsed_loss_value_of_a_plain_function() -> None:
    def plain(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return embeddings.sum() * 0 + 1.5

    assert collapsed_loss_value(plain, LABELS) == (1.5, None)


def test_fixes_skip_what_the_run_already_does() -> None:
    fixes = likely_fixes(loss_name="batch-hard", metric="sqeuclidean", lr=0.05, batch_size=32)
    assert any("--metric euclidean" in f for f in fixes)
    assert any("--smoothing 1" in f for f in fixes)
    assert any("0.05" in f for f in fixes)
    already = likely_fixes(loss_name="batch-all", metric="euclidean", smoothing=1.0)
    assert not any("--metric euclidean" in f or "--smoothing" in f for f in already)


def test_state_round_trips_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    detector = CollapseDetector(None, window=10, reference_steps=5)
    detector.update_many(_collapsing(i) for i in range(12))  # mid-window, no alarm yet
    save_checkpoint(tmp_path / "c.pt", {"collapse": detector.state_dict()})
    resumed = CollapseDetector(None, window=10, reference_steps=5)
    resumed.load_state_dict(load_checkpoint(tmp_path / "c.pt")["collapse"])
    rest = [_collapsing(i) for i in range(12, 20)]
    assert detector.update_many(rest) is not None
    assert resumed.update_many(rest) is not None
    assert resumed.alarm == detector.alarm
    again = CollapseDetector()
    again.load_state_dict(resumed.state_dict())
    assert again.alarm == detector.alarm


# -- real runs through the Trainer API ------------------------------------------------------


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from tripletlab.data.bundled import load_digits_dataset

    data = load_digits_dataset(flatten=True)
    x = (data.features - data.features.mean()) / data.features.std()
    return x, data.labels


def _train_and_watch(loss: torch.nn.Module, lr: float, tmp_path: Path) -> CollapseDetector:
    x, y = _digits()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16))
    # one thread (a tiny MLP); flushing denormals keeps a collapsed run, whose Adam moments
    # underflow, as fast as a healthy one
    torch.set_flush_denormal(True)
    try:
        with torch_threads(1), RunLogger(tmp_path, tensorboard=False) as logger:
            optimizer = torch.optim.Adam(model.parameters(), lr=lr)
            trainer = Trainer(model, loss, optimizer, logger=logger, progress=False)
            trainer.fit(x, y, epochs=2, p=8, k=4, steps_per_epoch=25)
    finally:
        torch.set_flush_denormal(False)
    # what the trainer hands the detector after each epoch: its logged step records
    detector = CollapseDetector.for_loss(loss, LABELS)
    detector.update_many(read_jsonl(tmp_path / "steps.jsonl"))
    return detector


def test_batch_hard_squared_high_lr_collapses_and_alarms(tmp_path: Path) -> None:
    detector = _train_and_watch(BatchHardTripletLoss(margin=0.2), lr=0.05, tmp_path=tmp_path)
    assert detector.alarm is not None
    assert detector.alarm.kind in ("distances_vanished", "loss_at_collapse_value")
    assert detector.alarm.step <= 50


def test_soft_margin_euclidean_batch_hard_trains_without_alarm(tmp_path: Path) -> None:
    loss = BatchHardTripletLoss(margin=0.0, smoothing=1.0, metric="euclidean")
    assert _train_and_watch(loss, lr=1e-3, tmp_path=tmp_path).alarm is None


def test_batch_all_trains_without_alarm(tmp_path: Path) -> None:
    assert _train_and_watch(BatchAllTripletLoss(margin=0.2), 1e-3, tmp_path).alarm is None
