"""Distributed P×K sampler: disjoint ranks, equal step counts, reproducible epochs."""

from __future__ import annotations

import pytest

from tripletlab.data.distributed_sampler import DistributedPKSampler
from tripletlab.data.sampler import PKSampler


def _labels() -> list[int]:
    return [c for c in range(13) for _ in range(3 + c % 5)]  # uneven classes


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_ranks_see_disjoint_samples_and_run_the_same_number_of_steps(world: int) -> None:
    labels = _labels()
    samplers = [
        DistributedPKSampler(labels, p=3, k=2, seed=7, num_replicas=world, rank=r)
        for r in range(world)
    ]
    for epoch in (0, 1):
        for s in samplers:
            s.set_epoch(epoch)
        shares = [s.batches() for s in samplers]
        assert len({len(b) for b in shares}) == 1
        assert all(len(s) == len(shares[0]) for s in samplers)
        seen = [{i for batch in share for i in batch} for share in shares]
        for a in range(world):
            for b in range(a + 1, world):
                assert seen[a].isdisjoint(seen[b])
        every = PKSampler(labels, p=3, k=2, seed=7)
        every.set_epoch(epoch)
        all_batches = every.batches()
        # only the len % world smallest batches of the epoch are left out
        left_out = len(all_batches) % world
        covered = sum(len(x) for x in seen)
        smallest = sorted(len(b) for b in all_batches)[:left_out]
        assert covered == len(labels) - sum(smallest)
        # each rank's batches are P×K batches of the single-process epoch
        as_sets = [sorted(b) for b in all_batches]
        assert all(sorted(batch) in as_sets for share in shares for batch in share)


def test_epochs_differ_and_are_reproducible() -> None:
    a = DistributedPKSampler(_labels(), p=2, k=2, seed=1, num_replicas=2, rank=1)
    b = DistributedPKSampler(_labels(), p=2, k=2, seed=1, num_replicas=2, rank=1)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)
    b.set_epoch(4)
    assert list(a) != list(b)


def test_bad_rank_or_world_size() -> None:
    with pytest.raises(ValueError, match="rank"):
        DistributedPKSampler(_labels(), p=2, k=2, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas"):
        DistributedPKSampler(_labels(), p=2, k=2, num_replicas=0, rank=0)
