import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

from tripletlab import PKSampler
from tripletlab.data.sampler import pk_batches


@settings(max_examples=100, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=1, max_size=12),
    p=st.integers(1, 5),
    k=st.integers(1, 5),
    seed=st.integers(0, 100),
    epoch=st.integers(0, 5),
)
def test_every_sample_exactly_once_with_distinct_classes(sizes, p, k, seed, epoch):
    labels = [c for c, size in enumerate(sizes) for _ in range(size)]
    batches = pk_batches(labels, p, k, seed=seed, epoch=epoch)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(labels)))
    for batch in batches:
        classes = [labels[i] for i in batch]
        assert len(batch) <= p * k
        assert len(set(classes)) <= p
        assert all(classes.count(c) <= k for c in set(classes))
    # leftovers are spread evenly: group sizes of a class differ by at most one, so a class
    # with >= 2 samples never contributes a lone sample unless K <= 2
    for c, size in enumerate(sizes):
        group_sizes = [sum(labels[i] == c for i in b) for b in batches]
        group_sizes = [g for g in group_sizes if g]
        assert max(group_sizes) - min(group_sizes) <= 1
        if size >= 2 and k >= 3:
            assert min(group_sizes) >= 2


def test_full_batches_when_classes_divide_evenly():
    labels = [c for c in range(10) for _ in range(8)]
    batches = pk_batches(labels, p=5, k=4, seed=0)
    assert len(batches) == 4 and all(len(b) == 20 for b in batches)
    for b in batches:
        assert sorted({labels[i] for i in b}) == sorted({labels[i] for i in b})
        assert len({labels[i] for i in b}) == 5


def test_deterministic_per_seed_and_epoch():
    labels = torch.arange(100) % 7
    s1, s2 = PKSampler(labels, 3, 4, seed=1), PKSampler(labels, 3, 4, seed=1)
    assert list(s1) == list(s2)
    first = list(s1)
    s1.set_epoch(1)
    assert list(s1) != first
    s2.set_epoch(1)
    assert list(s1) == list(s2)
    assert list(PKSampler(labels, 3, 4, seed=2)) != first


def test_drop_last_keeps_only_full_batches():
    labels = [0] * 5 + [1] * 4 + [2] * 3
    sampler = PKSampler(labels, p=2, k=2, drop_last=True)
    assert len(sampler) == len(list(sampler))
    assert all(len(b) == 4 for b in sampler)
    assert len({i for b in sampler for i in b}) == sum(len(b) for b in sampler)


def test_works_as_dataloader_batch_sampler():
    labels = torch.arange(60) % 6
    data = TensorDataset(torch.arange(60), labels)
    loader = DataLoader(data, batch_sampler=PKSampler(labels, p=3, k=4, seed=0))
    seen = torch.cat([idx for idx, _ in loader])
    assert sorted(seen.tolist()) == list(range(60))
    assert len(loader) == 6  # 10 samples, K=4: groups of 4, 3, 3 per class; 18 groups, 3 a batch


def test_validation():
    with pytest.raises(ValueError, match="p must"):
        PKSampler([0, 1], p=0, k=2)
    with pytest.raises(ValueError, match="k must"):
        PKSampler([0, 1], p=1, k=1.5)
    with pytest.raises(TypeError, match="integers"):
        PKSampler([0.5, 1.0], p=1, k=1)
