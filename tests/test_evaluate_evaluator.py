"""evaluate_embeddings / evaluate_baseline and the clustering metrics."""

from __future__ import annotations

import json
import math

import pytest
import torch

from retrieval_reference import naive_retrieval
from tripletlab.errors import DataError
from tripletlab.evaluate import (
    clustering_metrics,
    evaluate_baseline,
    evaluate_embeddings,
    retrieval_metrics,
)


def _clustered(n: int, classes: int, spread: float, seed: int, d: int = 4):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    return 4 * torch.randn(classes, d, generator=g)[labels] + spread * torch.randn(
        n, d, generator=g
    ), labels


def test_clustering_of_separated_classes_is_perfect_and_of_noise_is_chance():
    x, y = _clustered(200, 4, 0.1, seed=0)
    assert clustering_metrics(x, y) == {"nmi": pytest.approx(1.0), "ami": pytest.approx(1.0)}
    noise = clustering_metrics(torch.randn(400, 4), torch.randint(0, 4, (400,)))
    assert abs(noise["ami"]) < 0.05 and noise["nmi"] < 0.1


def test_clustering_is_seeded_and_needs_two_classes():
    x, y = _clustered(120, 3, 3.0, seed=1)
    assert clustering_metrics(x, y, seed=5) == clustering_metrics(x, y, seed=5)
    with pytest.raises(DataError, match="two classes"):
        clustering_metrics(x, torch.zeros(120, dtype=torch.long))


def test_evaluate_embeddings_gathers_every_metric_as_json_numbers():
    x, y = _clustered(90, 3, 1.0, seed=2)
    found = evaluate_embeddings(x, y, n_pairs=200, return_curve=True)
    for key in (
        "precision_at_1",
        "r_precision",
        "map_at_r",
        "recall_at_1",
        "recall_at_5",
        "recall_at_10",
        "knn_accuracy",
        "nmi",
        "ami",
        "verification_auc",
        "verification_accuracy",
        "verification_threshold",
        "verification_tar_at_far_0.001",
        "verification_tar_at_far_0.01",
    ):
        assert isinstance(found[key], float) and math.isfinite(found[key]), key
    assert set(found["roc"]) == {"fpr", "tpr", "thresholds"}
    json.dumps(found)
    expected = naive_retrieval(x, y)
    assert found["map_at_r"] == pytest.approx(expected["map_at_r"], abs=1e-12)


def test_optional_parts_can_be_switched_off():
    x, y = _clustered(30, 3, 1.0, seed=3)
    found = evaluate_embeddings(x, y, verification=False, clustering=False, ks=(1,))
    assert found == retrieval_metrics(x, y, ks=(1,))


def test_gradients_are_not_tracked():
    x, y = _clustered(30, 3, 1.0, seed=3)
    x.requires_grad_(True)
    found = evaluate_embeddings(x * 2, y, n_pairs=50)
    assert isinstance(found["map_at_r"], float)


def test_baseline_flattens_images_and_converts_integers():
    g = torch.Generator().manual_seed(4)
    images = torch.randint(0, 255, (40, 1, 3, 3), generator=g, dtype=torch.uint8)
    y = torch.arange(40) % 4
    found = evaluate_baseline(images, y, n_pairs=100, seed=1)
    flat = evaluate_embeddings(images.reshape(40, 9).float(), y, n_pairs=100, seed=1)
    assert found == flat
