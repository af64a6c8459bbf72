"""Verification pairs, ROC, AUC, best threshold and TAR@FAR against brute-force sweeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from retrieval_reference import naive_auc, naive_best_accuracy, naive_distances, naive_tar_at_far
from tripletlab.errors import DataError
from tripletlab.evaluate import evaluate_verification, sample_pairs


def _clustered(n: int, classes: int, spread: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    return torch.randn(classes, 4, generator=g)[labels] + spread * torch.randn(
        n, 4, generator=g
    ), labels


def test_pairs_are_balanced_correct_and_never_self_pairs():
    _, y = _clustered(200, 9, 1.0, seed=0)
    y[:5] = 100 + torch.arange(5)  # singleton classes: never in a positive pair
    first, second, same = sample_pairs(y, 3000, seed=1)
    assert len(first) == 6000 and int(same.sum()) == 3000
    assert torch.equal(y[first] == y[second], same)
    assert not (first == second).any()
    assert not torch.isin(first[same], torch.arange(5)).any()
    # Every pair kind reaches every class that can take part in it.
    assert set(y[first[same]].tolist()) == set(y[5:].tolist())
    assert set(y[second[~same]].tolist()) == set(y.tolist())


def test_pairs_are_seeded():
    _, y = _clustered(50, 3, 1.0, seed=0)
    a = sample_pairs(y, 100, seed=7)
    b = sample_pairs(y, 100, seed=7)
    c = sample_pairs(y, 100, seed=8)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "cosine"])
def test_metrics_match_brute_force_threshold_sweeps(metric):
    x, y = _clustered(150, 6, 1.3, seed=2)
    found = evaluate_verification(x, y, metric=metric, n_pairs=400, seed=3)
    first, second, same = sample_pairs(y, 400, seed=3)
    d = naive_distances(x, x, metric)[first, second].numpy()
    same = same.numpy()
    assert found["auc"] == pytest.approx(naive_auc(d, same), abs=1e-12)
    best, _ = naive_best_accuracy(d, same)
    assert found["best_accuracy"] == pytest.approx(best, abs=1e-12)
    assert ((d <= found["best_threshold"] + 1e-12) == same).mean() == pytest.approx(best)
    for far in (1e-3, 1e-2):
        assert found[f"tar_at_far_{far:g}"] == pytest.approx(naive_tar_at_far(d, same, far))
    assert found["n_positive_pairs"] == found["n_negative_pairs"] == 400


def test_curve_is_monotone_and_thinned():
    x, y = _clustered(300, 5, 2.0, seed=4)
    found = evaluate_verification(x, y, n_pairs=2000)
    fpr, tpr = np.array(found["fpr"]), np.array(found["tpr"])
    assert len(fpr) <= 512 and fpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()


def test_separable_classes_are_perfect():
    x = torch.tensor([[0.0], [0.1], [0.2], [5.0], [5.1]])
    found = evaluate_verification(x, torch.tensor([0, 0, 0, 1, 1]), n_pairs=100)
    assert found["auc"] == 1.0 and found["best_accuracy"] == 1.0
    assert found["tar_at_far_0.001"] == 1.0
    assert 0.04 <= found["best_threshold"] < 23.0


def test_unusable_labels_raise_data_errors():
    with pytest.raises(DataError, match="two classes"):
        evaluate_verification(torch.randn(4, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(DataError, match="at least two samples"):
        evaluate_verification(torch.randn(3, 2), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="n_pairs"):
        sample_pairs(torch.tensor([0, 0, 1]), 0)
