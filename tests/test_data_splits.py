"""Seeded stratified and held-out-classes splits."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tripletlab.data import (
    EmbeddingDataset,
    held_out_classes_split,
    official_split,
    split_dataset,
    split_indices,
    stratified_split,
)
from tripletlab.errors import DataError


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 20), min_size=1, max_size=8),
    fraction=st.floats(0.05, 0.95),
    seed=st.integers(0, 1000),
)
def test_stratified_split_partitions_and_keeps_every_class_on_both_sides(sizes, fraction, seed):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(sizes)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]
    split = stratified_split(labels, fraction, seed)
    both = torch.cat([split.train, split.test])
    assert torch.equal(torch.sort(both).values, torch.arange(len(labels)))
    assert torch.equal(split.train, torch.sort(split.train).values)
    for c, n in enumerate(sizes):
        n_test = int((labels[split.test] == c).sum())
        if n == 1:
            assert n_test == 0
        else:
            assert n_test == min(max(round(n * fraction), 1), n - 1)


def test_stratified_split_is_seeded():
    labels = torch.arange(100) % 5
    a, b, c = (stratified_split(labels, 0.3, s) for s in (1, 1, 2))
    assert torch.equal(a.test, b.test) and not torch.equal(a.test, c.test)


@settings(max_examples=40, deadline=None)
@given(classes=st.integers(3, 15), fraction=st.floats(0.05, 0.95), seed=st.integers(0, 1000))
def test_held_out_classes_are_disjoint(classes, fraction, seed):
    labels = torch.arange(classes * 3) % classes
    split = held_out_classes_split(labels, fraction, seed)
    train, test = set(labels[split.train].tolist()), set(labels[split.test].tolist())
    assert train.isdisjoint(test) and train | test == set(range(classes))
    assert len(test) == min(max(round(classes * fraction), 2), classes - 1)
    assert len(split.train) + len(split.test) == len(labels)


def test_held_out_classes_needs_three_classes_and_valid_arguments():
    with pytest.raises(DataError, match="at least 3 classes"):
        held_out_classes_split(torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split(torch.tensor([0, 1]), 1.0)
    with pytest.raises(ValueError, match="kind must be one of"):
        split_indices(torch.tensor([0, 1]), "random")


def test_split_dataset_and_official_split():
    ds = EmbeddingDataset(
        torch.randn(10, 2),
        torch.arange(10) % 2,
        ["a", "b"],
        "toy",
        official_test=torch.arange(10) >= 7,
    )
    train, test = split_dataset(ds, "official")
    assert len(train) == 7 and len(test) == 3 and test.name == "toy/test"
    assert official_split(ds).test.tolist() == [7, 8, 9]
    train, test = split_dataset(ds, "stratified", 0.4, seed=0)
    assert sorted(test.labels.tolist()) == [0, 0, 1, 1]
    with pytest.raises(DataError, match="no official test split"):
        official_split(EmbeddingDataset(torch.zeros(2, 1), torch.tensor([0, 1]), ["a", "b"], "x"))
