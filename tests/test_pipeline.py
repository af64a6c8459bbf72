"""The pipeline layer's parts: registries as the one source of names, RunDir's layout, the
loss protocol as the trainer sees it, embed(), and the CLI's error policy."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import tripletlab
from tripletlab.cli import main
from tripletlab.errors import InvalidArgumentError
from tripletlab.functional.distances import METRICS
from tripletlab.nn.embedding import embed
from tripletlab.nn.loss_base import NoStats, as_batch_loss
from tripletlab.nn.networks import MODEL_NAMES
from tripletlab.pipeline import registries
from tripletlab.pipeline.config import RunConfig
from tripletlab.pipeline.factories import LOSSES, OPTIMIZERS, build_backend, build_optimizer
from tripletlab.pipeline.run_dir import RunDir
from tripletlab.train.trainer import Trainer


def test_registries_name_exactly_what_the_factories_and_lower_layers_build() -> None:
    assert tuple(LOSSES) == registries.LOSS_NAMES
    assert tuple(OPTIMIZERS) == registries.OPTIMIZER_NAMES
    assert tuple(METRICS) == registries.METRIC_NAMES
    assert tuple(MODEL_NAMES) == registries.MODEL_NAMES
    for name in registries.OPTIMIZER_NAMES:
        build_optimizer(name, torch.nn.Linear(2, 2).parameters(), lr=0.1)
    assert type(build_backend("torch")).__name__ == "TorchKNN"
    with pytest.raises(InvalidArgumentError, match="backend must be one of"):
        build_backend("annoy")


def test_cli_choices_and_defaults_come_from_the_registries_and_run_config() -> None:
    options = {p.name: p for p in main.commands["train"].params}
    assert tuple(options["loss"].type.choices) == registries.LOSS_NAMES
    assert tuple(options["metric"].type.choices) == registries.METRIC_NAMES
    defaults = RunConfig()
    assert options["epochs"].help.endswith(f"[default: {defaults.train.epochs}]")
    assert options["lr"].help.endswith(f"[default: {defaults.optim.lr}]")
    search = {p.name: p for p in main.commands["search"].params}
    assert tuple(search["backend"].type.choices) == registries.BACKEND_NAMES


def test_run_dir_finds_the_final_checkpoint_before_the_last(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        run.trained_checkpoint()
    run.checkpoints_dir.mkdir()
    run.checkpoint_path.write_bytes(b"last")
    assert run.trained_checkpoint().name == "last.pt"
    (run.checkpoints_dir / "final.pt").write_bytes(b"final")
    assert run.trained_checkpoint().name == "final.pt"
    run.write_metrics({"test": {"verification_threshold": 0.5, "auc": float("nan")}})
    assert run.verification_threshold() == 0.5
    assert run.read_metrics() == {"test": {"verification_threshold": 0.5, "auc": None}}


def test_the_trainer_logs_the_stats_of_protocol_losses_and_none_for_plain_ones() -> None:
    x, y = torch.randn(24, 4), torch.arange(24) % 4
    for loss, expect_stats in [
        (tripletlab.BatchAllTripletLoss(), True),
        (tripletlab.BatchContrastiveLoss(), True),
        (tripletlab.XBMLoss(tripletlab.BatchHardTripletLoss(), 16, 2), True),
        (lambda e, labels: e.pow(2).mean(), False),
    ]:
        model = torch.nn.Linear(4, 2)
        trainer = Trainer(model, loss, torch.optim.SGD(model.parameters(), lr=0.1), progress=False)
        value, stats = trainer.train_step(x[:8], y[:8])
        assert value.dim() == 0
        assert bool(stats.as_dict()) == expect_stats
        if expect_stats:
            assert "active_fraction" in stats.as_dict()
        else:
            assert isinstance(stats, NoStats)


def test_a_plain_loss_that_raises_type_error_is_not_mistaken_for_a_protocol_question() -> None:
    # the trainer used to catch TypeError and match its text; a bug now surfaces as itself
    def broken(embeddings, labels):
        raise TypeError("a bug inside the loss")

    with pytest.raises(TypeError, match="a bug inside the loss"):
        as_batch_loss(broken)(torch.zeros(2, 2), torch.zeros(2), return_stats=True)


def test_embed_restores_training_mode_and_normalises() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5))
    model.train()
    x = torch.randn(7, 3)
    out = embed(model, x, batch_size=3, normalize=True)
    assert model.training and out.shape == (7, 4)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(7))
    torch.testing.assert_close(out, embed(model, x, batch_size=7, normalize=True))  # no dropout


def test_cli_user_errors_are_one_line_and_bugs_keep_their_traceback(monkeypatch, tmp_path) -> None:
    import tripletlab.pipeline.evaluation as evaluation

    def user_error(*args, **kwargs):
        raise InvalidArgumentError("margin must be finite")

    monkeypatch.setattr(evaluation, "evaluate_run", user_error)
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path)])
    assert result.exit_code == 2 and result.output.strip() == "error: margin must be finite"

    def bug(*args, **kwargs):
        raise ValueError("an internal bug")

    monkeypatch.setattr(evaluation, "evaluate_run", bug)
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path)])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)


def test_old_import_paths_still_work_with_a_deprecation_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from tripletlab.train import RunConfig as OldRunConfig
        from tripletlab.train.recognition import index_run
        from tripletlab.train.run import run_training
    assert OldRunConfig is RunConfig and callable(run_training) and callable(index_run)
    assert {w.category for w in caught} == {DeprecationWarning}
    with pytest.raises(AttributeError):
        import tripletlab.train.run as old

        _ = old.no_such_name
