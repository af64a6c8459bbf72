"""Training across processes: ``torchrun --nproc_per_node=N tripletlab train …``.

:class:`DistributedTrainer` is the :class:`~tripletlab.train.trainer.Trainer` with four
changes, and nothing else:

* the forward pass of a training step goes through ``DistributedDataParallel`` (gradients
  averaged over the ranks);
* the loss is mined over the global batch: embeddings and labels of all ranks are gathered
  with their autograd graph (:class:`~tripletlab.distributed.GlobalBatchLoss`), so one step
  of N ranks equals one process on the concatenated N·P×K batch — loss *and* gradients;
* batches come from :class:`~tripletlab.data.distributed_sampler.DistributedPKSampler`: the
  ranks see disjoint samples of the same seeded epoch and run the same number of steps;
* only rank 0 writes checkpoints (the other ranks hold identical weights: DDP keeps them in
  sync), holding every rank's RNG state; a resume reads rank 0's checkpoint on every rank.

:func:`distributed_context` joins the process group that ``torchrun`` describes (with the
collective timeout of :func:`tripletlab.distributed.init_distributed`, so a rank that dies
makes the others fail with a :class:`~tripletlab.distributed.DistributedError` instead of
hanging) and says which trainer class and which outputs this rank uses.

Leaving the group, in this order
--------------------------------
A ``DistributedDataParallel`` reducer holds a reference to the gloo process group. If the
reducer is destroyed *after* ``destroy_process_group`` — because the caller still holds the
trainer when the group goes — it drops the last reference to the group and can deadlock in
``~ProcessGroupGloo`` (seen: a rank hung for 300 s at exit). So the DDP wrapper lives only
while it trains: :meth:`DistributedTrainer.fit` releases it when it returns (or raises), and
:meth:`DistributedContext.close` releases the wrapper of every trainer still alive, collects
garbage (a wrapper in a reference cycle), waits for all ranks at a barrier, and only then
destroys the group.
"""

from __future__ import annotations

import gc
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from tripletlab import distributed as tdist
from tripletlab.data.distributed_sampler import DistributedPKSampler
from tripletlab.nn.embedding import l2_normalize
from tripletlab.nn.loss_base import BatchLoss, LossStats, as_batch_loss
from tripletlab.train.checkpoint import restore_rng_state, save_checkpoint
from tripletlab.train.trainer import Trainer

__all__ = ["DistributedContext", "DistributedTrainer", "distributed_context"]

#: The DistributedTrainers alive in this process: :meth:`DistributedContext.close` releases
#: their DDP wrappers before the process group (which is process-wide too) is destroyed.
_LIVE_TRAINERS: weakref.WeakSet[DistributedTrainer] = weakref.WeakSet()


class GlobalLoss(BatchLoss):
    """A batch loss evaluated on the global batch of all ranks (the loss protocol kept:
    ``return_stats`` is passed through to the wrapped loss)."""

    def __init__(self, loss: Any) -> None:
        super().__init__()
        self.loss = as_batch_loss(loss)
        self._global = tdist.GlobalBatchLoss(self.loss)

    def forward(
        self, embeddings: Tensor, labels: Tensor, return_stats: bool = False
    ) -> Tensor | tuple[Tensor, LossStats]:
        result: Tensor | tuple[Tensor, LossStats] = self._global(
            embeddings, labels, return_stats=return_stats
        )
        return result


class DistributedTrainer(Trainer):
    """A :class:`Trainer` for one rank of a torchrun job (see the module docstring).

    Args: those of :class:`Trainer`; ``loss`` is the per-batch loss as in one process (it is
    wrapped to see the global batch). Pass ``logger``/``validate`` only on rank 0.
    Outside a process group (world size 1) it behaves exactly like :class:`Trainer`.
    """

    def __init__(self, model: torch.nn.Module, loss: Any, optimizer: Any, **kwargs: Any) -> None:
        device = torch.device(kwargs.get("device", "cpu"))
        if device.type == "cuda" and device.index is None and tdist.is_distributed():
            # one GPU per rank: torchrun's LOCAL_RANK picks it
            kwargs["device"] = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(kwargs["device"])
        super().__init__(model, GlobalLoss(loss), optimizer, **kwargs)
        self.ddp: torch.nn.Module | None = None
        self._wrap()
        _LIVE_TRAINERS.add(self)

    def _wrap(self) -> None:
        """Wrap the model in DistributedDataParallel when distributed and not wrapped yet.

        A collective (rank 0's parameters are broadcast): every rank calls it at the same
        point — building its trainer, starting ``fit``, the first training step after a
        release. The wrapper registers the parameters that require gradients *now*, so
        ``fit`` builds it before any epoch hook freezes some."""
        if self.ddp is None and tdist.is_distributed():
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)

    def release_ddp(self) -> None:
        """Drop the DistributedDataParallel wrapper and collect it now, while the process
        group is alive (see the module docstring); the next training step wraps the model
        again."""
        if self.ddp is None:
            return
        self.ddp = None
        gc.collect()  # the wrapper's hooks form reference cycles: free its reducer now

    def _forward(self, inputs: Tensor) -> Tensor:
        if not (self.model.training and torch.is_grad_enabled()):
            return super()._forward(inputs)
        self._wrap()  # a train_step of the caller's after fit released it averages gradients too
        if self.ddp is None:  # not distributed
            return super()._forward(inputs)
        embeddings = self.ddp(inputs)
        return l2_normalize(embeddings) if self.normalize else embeddings

    def state_dict(self) -> dict[str, Any]:
        """:meth:`Trainer.state_dict` plus every rank's RNG state (a collective call).

        Dropout and other random layers draw from each rank's own generator: a resume must
        continue every rank's stream where it stopped, not hand rank 0's state to all.
        """
        state = super().state_dict()
        if tdist.is_distributed():
            per_rank: list[Any] = [None] * tdist.get_world_size()
            torch.distributed.all_gather_object(per_rank, state["rng"])
            state["rng_per_rank"] = per_rank
        return state

    def load_state_dict(self, state: Any) -> None:
        super().load_state_dict(state)
        per_rank = state.get("rng_per_rank")
        if per_rank is not None and len(per_rank) == tdist.get_world_size():
            restore_rng_state(per_rank[tdist.get_rank()])

    def save(self, name: str = Trainer.LAST_CHECKPOINT) -> Path | None:
        """Every rank takes part (RNG states are gathered); rank 0 alone writes the file."""
        if self.checkpoint_dir is None:
            return None
        state = self.state_dict()
        if not tdist.is_main_process():
            return None
        return save_checkpoint(self.checkpoint_dir / name, state)

    def fit(
        self,
        inputs: Tensor | Dataset,
        labels: Tensor,
        *,
        epochs: int,
        p: int,
        k: int,
        steps_per_epoch: int | None = None,
        resume_from: str | Path | None = None,
        sampler: Any = None,
    ) -> list[dict[str, Any]]:
        """:meth:`Trainer.fit` with a :class:`DistributedPKSampler` (disjoint batches per rank)
        through the DDP wrapper, which is released when ``fit`` returns or raises."""
        if sampler is None:
            sampler = DistributedPKSampler(labels.cpu(), p=p, k=k, seed=self.seed)
        self._wrap()
        try:
            history = super().fit(
                inputs,
                labels,
                epochs=epochs,
                p=p,
                k=k,
                steps_per_epoch=steps_per_epoch,
                resume_from=resume_from,
                sampler=sampler,
            )
        finally:
            self.release_ddp()
        tdist.barrier()  # rank 0 has written final.pt before anyone moves on
        return history


@dataclass(frozen=True)
class DistributedContext:
    """What this process does in a (possibly) distributed run."""

    enabled: bool
    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        """Rank 0: writes config, logs, checkpoints, metrics and the report."""
        return self.rank == 0

    @property
    def trainer_class(self) -> type[Trainer]:
        return DistributedTrainer if self.enabled else Trainer

    def close(self) -> None:
        """Leave the process group (no-op when not distributed), in the order of the module
        docstring: DDP wrappers released, garbage collected, a barrier, then the group
        destroyed (even when the barrier fails: a peer died)."""
        if not self.enabled:
            return
        for trainer in list(_LIVE_TRAINERS):
            trainer.release_ddp()
        gc.collect()
        try:
            tdist.barrier()
        finally:
            tdist.destroy_distributed()


def distributed_context(
    backend: str | None = None, timeout_s: float | None = None
) -> DistributedContext:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1; else a single-process context.

    Example:
        >>> distributed_context()  # a plain run
        DistributedContext(enabled=False, rank=0, world_size=1)
    """
    enabled = tdist.init_distributed(backend, timeout_s)
    return DistributedContext(enabled, tdist.get_rank(), tdist.get_world_size())
