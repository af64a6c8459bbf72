"""The Trainer: learns a separable problem, deterministic, logs steps/epochs, clips, normalises."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tripletlab.pipeline.factories import build_loss, build_optimizer, build_scheduler
from tripletlab.train.logging import RunLogger, read_jsonl
from tripletlab.train.trainer import Trainer


def _blobs(n_classes: int = 5, per_class: int = 20, dim: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_classes, dim, generator=g)
    y = torch.arange(n_classes).repeat_interleave(per_class)
    return centres[y] + 0.5 * torch.randn(len(y), dim, generator=g), y


def _p_at_1(emb: torch.Tensor, y: torch.Tensor) -> float:
    d = torch.cdist(emb, emb)
    d.fill_diagonal_(float("inf"))
    return (y[d.argmin(1)] == y).double().mean().item()


def _make(tmp_path: Path | None = None, seed: int = 0, **kw) -> Trainer:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    opt = build_optimizer(kw.pop("optimizer", "adam"), model.parameters(), lr=0.01)
    scheduler = build_scheduler("cosine", opt, epochs=6) if kw.pop("schedule", True) else None
    logger = RunLogger(tmp_path, tensorboard=False) if tmp_path is not None else None
    return Trainer(
        model,
        build_loss("batch-all", 0.2, "sqeuclidean", None, "mean_active"),
        opt,
        scheduler=scheduler,
        logger=logger,
        seed=seed,
        progress=False,
        **kw,
    )


def test_training_improves_retrieval_and_logs(tmp_path: Path) -> None:
    x, y = _blobs()
    trainer = _make(tmp_path, validate=lambda t: {"p_at_1": _p_at_1(t.embed(x), y)})
    before = _p_at_1(trainer.embed(x), y)
    history = trainer.fit(x, y, epochs=6, p=5, k=4)
    assert len(history) == 6
    assert all(h["loss"] >= 0 for h in history)
    assert history[-1]["val_p_at_1"] > before
    assert history[-1]["val_p_at_1"] >= 0.95
    steps = read_jsonl(tmp_path / "steps.jsonl")
    assert len(steps) == trainer.global_step
    assert [s["step"] for s in steps] == list(range(1, trainer.global_step + 1))
    epochs = read_jsonl(tmp_path / "epochs.jsonl")
    assert [e["epoch"] for e in epochs] == list(range(1, 7))
    assert (tmp_path / "epochs.csv").read_text().startswith("epoch,")


def test_triplet_stats_are_logged_per_step(tmp_path: Path) -> None:
    x, y = _blobs()
    trainer = _make(tmp_path)
    trainer.fit(x, y, epochs=1, p=5, k=4)
    step = read_jsonl(tmp_path / "steps.jsonl")[0]
    fractions = [step[k] for k in ("easy_fraction", "semi_hard_fraction", "hard_fraction")]
    assert sum(fractions) == pytest.approx(1.0, abs=1e-6)
    assert 0.0 <= step["active_fraction"] <= 1.0


def test_same_seed_same_weights_other_seed_differs() -> None:
    x, y = _blobs()
    a, b, c = _make(seed=1), _make(seed=1), _make(seed=2)
    for t in (a, b, c):
        t.fit(x, y, epochs=2, p=5, k=4)
    assert torch.equal(a.embed(x), b.embed(x))
    assert not torch.equal(a.embed(x), c.embed(x))


def test_normalised_embeddings_have_unit_norm() -> None:
    x, _ = _blobs()
    trainer = _make(normalize=True)
    assert torch.allclose(trainer.embed(x).norm(dim=1), torch.ones(len(x)), atol=1e-5)
    raw = _make(normalize=False)
    assert not torch.allclose(raw.embed(x).norm(dim=1), torch.ones(len(x)), atol=1e-2)


def test_gradient_clipping_bounds_the_gradient_norm() -> None:
    x, y = _blobs()
    trainer = _make(grad_clip=1e-3, schedule=False)
    seen = []
    step = trainer.optimizer.step

    def spy():
        grads = [p.grad.norm() for p in trainer.model.parameters() if p.grad is not None]
        seen.append(torch.stack(grads).norm().item())
        step()

    trainer.optimizer.step = spy
    trainer.fit(x, y, epochs=1, p=5, k=4)
    assert seen
    assert max(seen) <= 1e-3 * (1 + 1e-4)


def test_arguments_are_validated() -> None:
    x, y = _blobs()
    with pytest.raises(ValueError, match="grad_clip"):
        _make(grad_clip=0.0)
    with pytest.raises(ValueError, match="epochs"):
        _make().fit(x, y, epochs=0, p=5, k=4)
    with pytest.raises(ValueError, match="same length"):
        _make().fit(x, y[:-1], epochs=1, p=5, k=4)
    with pytest.raises(ValueError, match="optimizer"):
        build_optimizer("rmsprop", [torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="scheduler"):
        build_scheduler("plateau", torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1), 3)


def test_degenerate_batches_give_finite_loss() -> None:
    # Two classes of which one has a single sample: some batches hold no valid triplet.
    x = torch.randn(9, 8)
    y = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, 1])
    trainer = _make()
    history = trainer.fit(x, y, epochs=2, p=2, k=4)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history)


def test_tensorboard_scalars_when_installed(tmp_path: Path, monkeypatch) -> None:
    import sys
    import types

    written: list[tuple[str, float, int]] = []

    class FakeWriter:
        def __init__(self, log_dir: str) -> None:
            self.log_dir = log_dir

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            written.append((tag, value, step))

        def flush(self) -> None:
            pass

        def close(self) -> None:
            pass

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    with RunLogger(tmp_path) as log:
        log.log_steps([{"epoch": 1, "step": 1, "loss": 0.5, "hard_fraction": 0.25}])
        log.log_epoch({"epoch": 1, "loss": 0.5, "val_map_at_r": 0.75})
    assert ("step/loss", 0.5, 1) in written
    assert ("step/hard_fraction", 0.25, 1) in written
    assert ("epoch/val_map_at_r", 0.75, 1) in written
