import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_references import random_batch
from tripletlab.functional import (
    batch_all_triplet_loss,
    classify_triplets,
    mine_triplets,
    pairwise_distances,
    triplet_margin_loss,
)


def enumerate_triplets(x, y, strategy, margin):
    d = pairwise_distances(x)
    out = []
    for a in range(len(y)):
        for p in range(len(y)):
            for n in range(len(y)):
                if p == a or y[p] != y[a] or y[n] == y[a]:
                    continue
                d_ap, d_an = d[a, p], d[a, n]
                keep = {
                    "all": True,
                    "hard": bool(d_an <= d_ap),
                    "semi_hard": bool(d_ap < d_an) and bool(d_an <= d_ap + margin),
                    "easy": bool(d_an > d_ap + margin),
                }[strategy]
                if keep:
                    out.append((a, p, n))
    return sorted(out)


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 9),
    n_classes=st.integers(1, 4),
    integer=st.booleans(),
    strategy=st.sampled_from(["all", "hard", "semi_hard", "easy"]),
    margin=st.sampled_from([0.0, 1.0, 2.0]),
    budget=st.sampled_from([1, 2**28]),
)
def test_strategies_equal_enumeration(seed, n, n_classes, integer, strategy, margin, budget):
    x, y = random_batch(seed, n, n_classes, integer=integer)
    a, p, n_ = mine_triplets(x, y, strategy, margin=margin, memory_budget=budget)
    got = sorted(zip(a.tolist(), p.tolist(), n_.tolist(), strict=True))
    assert got == enumerate_triplets(x, y, strategy, margin)


def test_counts_agree_with_classify_triplets():
    x, y = random_batch(1, 30, 4)
    counts = classify_triplets(x, y, 1.0)
    for strategy, count in [
        ("all", counts.num_triplets),
        ("hard", counts.num_hard),
        ("semi_hard", counts.num_semi_hard),
        ("easy", counts.num_easy),
    ]:
        assert len(mine_triplets(x, y, strategy, margin=1.0)[0]) == int(count)


@pytest.mark.parametrize("smoothing", [None, 0.5])
@pytest.mark.parametrize("reduction", ["mean", "mean_active", "sum"])
def test_explicit_triplets_give_the_batch_loss(smoothing, reduction):
    x, y = random_batch(2, 16, 3)
    a, p, n = mine_triplets(x, y, "all")
    explicit = triplet_margin_loss(
        x[a], x[p], x[n], margin=0.7, smoothing=smoothing, reduction=reduction
    )
    batch = batch_all_triplet_loss(x, y, margin=0.7, smoothing=smoothing, reduction=reduction)
    torch.testing.assert_close(explicit, batch)


def test_hard_and_semi_hard_are_the_active_triplets():
    x, y = random_batch(3, 20, 3)
    parts = [mine_triplets(x, y, s, margin=0.7) for s in ("hard", "semi_hard")]
    a, p, n = (torch.cat(t) for t in zip(*parts, strict=True))
    explicit = triplet_margin_loss(x[a], x[p], x[n], margin=0.7, reduction="sum")
    torch.testing.assert_close(explicit, batch_all_triplet_loss(x, y, 0.7, reduction="sum"))


def test_limit_draws_a_reproducible_uniform_subset():
    x, y = random_batch(4, 40, 4)
    full = set(zip(*(t.tolist() for t in mine_triplets(x, y, "all")), strict=True))
    g1 = torch.Generator().manual_seed(5)
    g2 = torch.Generator().manual_seed(5)
    first = mine_triplets(x, y, "all", limit=100, generator=g1)
    second = mine_triplets(x, y, "all", limit=100, generator=g2, memory_budget=1)
    picked = list(zip(*(t.tolist() for t in first), strict=True))
    assert len(picked) == 100 == len(set(picked))
    assert set(picked) <= full
    assert all(torch.equal(u, v) for u, v in zip(first, second, strict=True))
    # a limit above the total returns everything
    assert len(mine_triplets(x, y, "all", limit=10**9)[0]) == len(full)
    # uniform: each anchor's share is close to its share of all triplets
    many = mine_triplets(x, y, "all", limit=len(full) // 2, generator=g1)[0]
    counts_all = torch.bincount(torch.tensor([t[0] for t in full]), minlength=40).double()
    counts_sub = torch.bincount(many, minlength=40).double()
    assert torch.allclose(counts_sub / counts_sub.sum(), counts_all / counts_all.sum(), atol=0.02)


def test_limit_on_a_large_batch_keeps_memory_bounded():
    # 600·149·450 ≈ 40M triplets (≈ 1 GB as three int64 tensors); only 1000 are built
    x = torch.randn(600, 8)
    y = torch.arange(600) % 4
    a, p, n = mine_triplets(x, y, "all", limit=1000, generator=torch.Generator().manual_seed(0))
    assert len(a) == 1000
    assert bool((y[a] == y[p]).all() and (y[a] != y[n]).all() and (a != p).all())


def test_validation_and_empty():
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match="strategy"):
        mine_triplets(x, torch.arange(4), "hardest")
    with pytest.raises(ValueError, match="limit"):
        mine_triplets(x, torch.arange(4), limit=-1)
    a, p, n = mine_triplets(x, torch.arange(4))
    assert a.shape == p.shape == n.shape == (0,) and a.dtype == torch.long
