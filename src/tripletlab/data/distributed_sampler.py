"""P×K batch sampling across processes: every rank gets its own, disjoint batches.

All ranks compute the same epoch of :func:`~tripletlab.data.sampler.pk_batches` from
``(seed, epoch)`` alone — no communication — and rank ``r`` of ``W`` takes batches
``r, r + W, r + 2W, …``. So the ranks see disjoint samples, and one step of the W ranks
together is a global batch of W·P classes × K samples (with
:mod:`tripletlab.distributed` the loss is mined over that global batch).

Every rank must run the same number of steps, or the collectives of the last step would wait
for a rank that has finished: the epoch is cut to ``⌊n_batches / W⌋·W`` batches (at most
``W − 1`` batches, the smallest of the epoch, are left out of that epoch; the next epoch is a
new partition).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler

from tripletlab.data.sampler import PKSampler
from tripletlab.errors import InvalidArgumentError


def _default_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class DistributedPKSampler(Sampler[list[int]]):
    """The rank's share of a P×K epoch: disjoint batches, the same number on every rank.

    Args:
        labels: (N,) integer class of each sample of the (whole) dataset.
        p: classes per batch on one rank.
        k: samples per class.
        seed: base seed, the same on every rank.
        drop_last: drop batches with fewer than P·K samples (before sharing them out).
        num_replicas: number of ranks W (default: the process group's world size, else 1).
        rank: this rank (default: the process group's rank, else 0).

    Call :meth:`set_epoch` before each epoch, on every rank.

    Example:
        >>> labels = [c for c in range(6) for _ in range(4)]
        >>> r0 = DistributedPKSampler(labels, p=2, k=2, num_replicas=2, rank=0)
        >>> r1 = DistributedPKSampler(labels, p=2, k=2, num_replicas=2, rank=1)
        >>> seen0 = {i for b in r0 for i in b}
        >>> seen1 = {i for b in r1 for i in b}
        >>> len(r0) == len(r1), seen0.isdisjoint(seen1), len(seen0 | seen1)
        (True, True, 24)
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        p: int,
        k: int,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        world, default_rank = _default_world()
        num_replicas = world if num_replicas is None else num_replicas
        rank = default_rank if rank is None else rank
        if isinstance(num_replicas, bool) or not isinstance(num_replicas, int) or num_replicas < 1:
            raise InvalidArgumentError(f"num_replicas must be an int >= 1; got {num_replicas!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < num_replicas:
            raise InvalidArgumentError(
                f"rank must be an int in [0, {num_replicas - 1}]; got {rank!r}"
            )
        self.sampler = PKSampler(labels, p, k, seed=seed, drop_last=drop_last)
        self.num_replicas = num_replicas
        self.rank = rank

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (call it on every rank with the same value)."""
        self.sampler.set_epoch(epoch)

    def batches(self) -> list[list[int]]:
        """This rank's batches of the current epoch."""
        every = self.sampler.batches()
        usable = len(every) // self.num_replicas * self.num_replicas
        if usable < len(every):  # leave out the smallest batches, keep the shuffled order
            sizes = np.array([len(b) for b in every])
            keep = np.sort(np.argsort(-sizes, kind="stable")[:usable])
            every = [every[i] for i in keep]
        return every[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches()

    def __len__(self) -> int:
        return len(self.sampler.batches()) // self.num_replicas
