"""Leaving the process group in the safe order, checked in one process with spies.

A DistributedDataParallel reducer destroyed after ``destroy_process_group`` can hang its rank
for 300 s in ``~ProcessGroupGloo``; whether it does depends on timing, so a real 2-process run
(tests/test_distributed.py) cannot show the order reliably. Here a stand-in wrapper is
watched through a weak reference while the collectives are spies: ``close`` must have freed
it before the barrier and the destroy, and ``fit`` must free it when it ends.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from tripletlab import distributed as tdist
from tripletlab.functional import batch_all_triplet_loss
from tripletlab.train.distributed_training import DistributedContext, DistributedTrainer


class _StandInWrapper(torch.nn.Module):
    """Plays the DDP wrapper in one process: forwards to the model, counts its calls."""

    def __init__(self, model: torch.nn.Module, calls: list[int]) -> None:
        super().__init__()
        self.model = model
        self.calls = calls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(len(x))
        return self.model(x)


def _trainer_with_wrapper(loss=batch_all_triplet_loss):
    """A DistributedTrainer (world size 1) holding a stand-in wrapper; the wrapper's only
    strong reference is the trainer's."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    trainer = DistributedTrainer(
        model, loss, torch.optim.SGD(model.parameters(), lr=0.1), progress=False
    )
    calls: list[int] = []
    trainer.ddp = _StandInWrapper(trainer.model, calls)
    return trainer, weakref.ref(trainer.ddp), calls


def _data():
    x = torch.randn(24, 4, generator=torch.Generator().manual_seed(1))
    return x, torch.arange(24) % 4


def test_close_frees_the_wrappers_then_collects_then_waits_for_all_then_destroys(
    monkeypatch,
) -> None:
    trainer, wrapper, _ = _trainer_with_wrapper()
    events: list[str] = []
    collect = gc.collect

    def spy_collect(*args: int) -> int:
        events.append("gc")
        return collect(*args)

    def collective(name: str):
        return lambda *args, **kwargs: events.append(
            name if wrapper() is None else f"{name} with a live DDP wrapper"
        )

    monkeypatch.setattr(gc, "collect", spy_collect)
    monkeypatch.setattr(tdist, "barrier", collective("barrier"))
    monkeypatch.setattr(tdist, "destroy_distributed", collective("destroy"))
    DistributedContext(enabled=True, rank=0, world_size=2).close()
    # the trainers' releases collect (one each: other live trainers may be released too),
    # close collects what else is pending, and only then the group is touched
    assert events[-3:] == ["gc", "barrier", "destroy"]
    assert events[:-3] and set(events[:-3]) == {"gc"}
    assert trainer.ddp is None  # the caller's trainer is alive; its wrapper is gone


def test_close_destroys_the_group_even_when_the_barrier_fails(monkeypatch) -> None:
    destroyed: list[bool] = []

    def dead_peer(*args: object, **kwargs: object) -> None:
        raise tdist.DistributedError("rank 0 of 2: barrier failed — another rank died")

    monkeypatch.setattr(tdist, "barrier", dead_peer)
    monkeypatch.setattr(tdist, "destroy_distributed", lambda: destroyed.append(True))
    with pytest.raises(tdist.DistributedError, match="another rank died"):
        DistributedContext(enabled=True, rank=0, world_size=2).close()
    assert destroyed == [True]


def test_close_of_a_single_process_run_touches_nothing(monkeypatch) -> None:
    trainer, wrapper, _ = _trainer_with_wrapper()
    monkeypatch.setattr(tdist, "barrier", pytest.fail)
    monkeypatch.setattr(tdist, "destroy_distributed", pytest.fail)
    DistributedContext(enabled=False, rank=0, world_size=1).close()
    assert wrapper() is trainer.ddp is not None


def test_fit_trains_through_the_wrapper_and_frees_it_at_its_end() -> None:
    trainer, wrapper, calls = _trainer_with_wrapper()
    x, y = _data()
    trainer.fit(x, y, epochs=2, p=2, k=3)
    assert len(calls) == trainer.global_step > 0  # every step went through the wrapper
    assert wrapper() is None and trainer.ddp is None


def test_fit_frees_the_wrapper_when_training_raises() -> None:
    def broken(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("the loss failed")

    trainer, wrapper, _ = _trainer_with_wrapper(broken)
    x, y = _data()
    with pytest.raises(RuntimeError, match="the loss failed"):
        trainer.fit(x, y, epochs=1, p=2, k=3)
    assert wrapper() is None and trainer.ddp is None
