"""Retrieval metrics against their definitions, applied literally one query at a time."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval_reference import naive_retrieval
from tripletlab.evaluate import TorchKNN, retrieval_metrics

METRICS = ("sqeuclidean", "euclidean", "cosine")


def _clustered(n: int, classes: int, d: int, spread: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    centres = torch.randn(classes, d, generator=g)
    return centres[labels] + spread * torch.randn(n, d, generator=g), labels


def _assert_same(found: dict, expected: dict) -> None:
    assert found["n_queries"] == expected["n_queries"]
    assert found["n_lone_queries"] == expected["n_lone_queries"]
    for name, value in expected.items():
        assert found[name] == pytest.approx(value, abs=1e-12), name


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("budget", [1, 2**29])
def test_leave_one_out_matches_the_definitions(metric, budget):
    x, y = _clustered(120, 5, 4, 1.2, seed=0)
    found = retrieval_metrics(x.double(), y, metric=metric, memory_budget_bytes=budget)
    _assert_same(found, naive_retrieval(x, y, metric))


def test_separate_references_match_the_definitions():
    x, y = _clustered(150, 4, 3, 1.0, seed=1)
    queries, q_labels, refs, r_labels = x[:40], y[:40], x[40:], y[40:]
    found = retrieval_metrics(
        queries.double(), q_labels, references=refs.double(), reference_labels=r_labels
    )
    expected = naive_retrieval(queries, q_labels, references=refs, reference_labels=r_labels)
    _assert_same(found, expected)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 30),
    classes=st.integers(1, 6),
    seed=st.integers(0, 10_000),
    knn_k=st.integers(1, 7),
)
def test_random_small_sets_match_the_definitions(n, classes, seed, knn_k):
    x, y = _clustered(n, classes, 2, 0.8, seed)
    x = x.double()
    found = retrieval_metrics(x, y, ks=(1, 2, 4), knn_k=knn_k)
    expected = naive_retrieval(x, y, ks=(1, 2, 4), knn_k=min(knn_k, n - 1))
    if expected["n_queries"] == 0:
        assert found["n_queries"] == 0 and math.isnan(found["map_at_r"])
    else:
        _assert_same(found, expected)


def test_hand_computed_example():
    # 1-D points; query 4 (x=0.6, class 1) has neighbours 1.0 (class 1), 0.1 (class 0):
    # R = 2, AP@R = (1/2)·(1/1) = 0.5; every other query is perfect.
    x = torch.tensor([[0.0], [0.1], [1.0], [1.2], [0.6]])
    y = torch.tensor([0, 0, 1, 1, 1])
    found = retrieval_metrics(x, y, ks=(1, 2))
    assert found["precision_at_1"] == 1.0
    assert found["map_at_r"] == pytest.approx(0.9)
    assert found["r_precision"] == pytest.approx(0.9)
    assert found["recall_at_2"] == 1.0


def test_lone_queries_are_left_out_and_counted():
    x = torch.tensor([[0.0], [0.1], [5.0], [9.0]])
    y = torch.tensor([0, 0, 1, 2])
    found = retrieval_metrics(x, y)
    assert found["n_queries"] == 2 and found["n_lone_queries"] == 2
    assert found["map_at_r"] == 1.0


def test_no_answerable_query_gives_nan_not_an_error():
    found = retrieval_metrics(torch.randn(3, 2), torch.tensor([0, 1, 2]))
    assert found["n_queries"] == 0 and math.isnan(found["precision_at_1"])


def test_perfect_and_worst_embeddings():
    y = torch.arange(40) % 4
    perfect = torch.nn.functional.one_hot(y, 4).double() * 10
    worst = retrieval_metrics(perfect, y)
    assert worst["map_at_r"] == 1.0 and worst["knn_accuracy"] == 1.0
    # Every neighbour list starts with the R members of other classes: precision@1 = 0.
    x = torch.tensor([[0.0], [10.0], [0.1], [10.1]])
    found = retrieval_metrics(x, torch.tensor([0, 0, 1, 1]))
    assert found["precision_at_1"] == 0.0 and found["map_at_r"] == 0.0


def test_chunking_and_budget_do_not_change_the_numbers():
    x, y = _clustered(300, 7, 5, 1.5, seed=3)
    base = retrieval_metrics(x, y)
    for budget in (1, 50_000):
        assert retrieval_metrics(x, y, memory_budget_bytes=budget) == base
    assert retrieval_metrics(x, y, knn=TorchKNN(memory_budget_bytes=7_000)) == base


def test_ks_larger_than_the_references_are_clamped():
    x, y = _clustered(6, 2, 2, 0.1, seed=4)
    found = retrieval_metrics(x, y, ks=(100,))
    assert found["recall_at_100"] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ks": ()}, "ks must be"),
        ({"ks": (0,)}, "ks must be"),
        ({"metric": "l1"}, "metric must be one of"),
        ({"references": torch.randn(3, 2)}, "without reference_labels"),
        ({"reference_labels": torch.tensor([0, 1])}, "without references"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        retrieval_metrics(torch.randn(4, 2), torch.tensor([0, 0, 1, 1]), **kwargs)


def test_bad_labels_are_named():
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        retrieval_metrics(torch.randn(4, 2), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="integer"):
        retrieval_metrics(torch.randn(2, 2), torch.tensor([0.0, 1.0]))


def test_average_precision_paths_agree():
    # The torch path (used off-CPU) and the numpy path (CPU) of the per-row sums.
    from tripletlab.evaluate.retrieval import (
        _hits_and_average_precision,
        _hits_and_average_precision_torch,
    )

    g = torch.Generator().manual_seed(9)
    relevant = torch.rand(17, 40, generator=g) < 0.3
    relevant[3] = False
    relevant[4] = True
    hits, ap = _hits_and_average_precision(relevant)
    hits_t, ap_t = _hits_and_average_precision_torch(relevant)
    assert torch.equal(hits, hits_t)
    torch.testing.assert_close(ap, ap_t, rtol=1e-14, atol=1e-14)
    assert hits[3] == 0 and ap[3] == 0 and hits[4] == 40 and ap[4] == 40


def test_mask_fn_removes_references_per_query_like_a_smaller_gallery():
    # A re-id-like protocol: query q must not see gallery items of its own "camera".
    x, y = _clustered(90, 4, 3, 1.0, seed=12)
    queries, q_labels, refs, r_labels = x[:30].double(), y[:30], x[30:].double(), y[30:]
    q_cam, r_cam = torch.arange(30) % 3, torch.arange(60) % 3

    def mask_fn(start: int, stop: int) -> torch.Tensor:
        return (q_cam[start:stop, None] == r_cam[None, :]) & (
            q_labels[start:stop, None] == r_labels[None, :]
        )

    ks = (1, 3, 50)  # 50 > some queries' eligible counts: clamped per query
    found = retrieval_metrics(
        queries,
        q_labels,
        references=refs,
        reference_labels=r_labels,
        ks=ks,
        knn_k=3,
        mask_fn=mask_fn,
    )
    totals: dict[str, float] = {}
    n = 0
    for q in range(30):
        keep = ~mask_fn(q, q + 1)[0]
        one = naive_retrieval(
            queries[q : q + 1],
            q_labels[q : q + 1],
            ks=ks,
            knn_k=3,
            references=refs[keep],
            reference_labels=r_labels[keep],
        )
        if one["n_queries"]:
            n += 1
            for name, value in one.items():
                if not name.startswith("n_"):
                    totals[name] = totals.get(name, 0.0) + value
    expected = {name: value / n for name, value in totals.items()}
    expected.update(n_queries=n, n_lone_queries=30 - n)
    _assert_same(found, expected)


def test_mask_fn_and_leave_one_out_together():
    x, y = _clustered(60, 3, 3, 1.0, seed=13)
    x = x.double()
    groups = torch.arange(60) % 5

    def mask_fn(start: int, stop: int) -> torch.Tensor:
        return groups[start:stop, None] == groups[None, :]  # includes the query itself

    found = retrieval_metrics(x, y, ks=(1, 2), mask_fn=mask_fn)
    totals: dict[str, float] = {}
    n = 0
    for q in range(60):
        keep = groups != groups[q]
        one = naive_retrieval(
            x[q : q + 1], y[q : q + 1], ks=(1, 2), references=x[keep], reference_labels=y[keep]
        )
        if one["n_queries"]:
            n += 1
            for name, value in one.items():
                if not name.startswith("n_"):
                    totals[name] = totals.get(name, 0.0) + value
    assert found["n_queries"] == n
    for name, value in totals.items():
        assert found[name] == pytest.approx(value / n, abs=1e-12), name


def test_threads_do_not_change_the_numbers():
    x, y = _clustered(400, 6, 5, 1.5, seed=14)
    one = retrieval_metrics(x, y, knn=TorchKNN(threads=1))
    assert retrieval_metrics(x, y, knn=TorchKNN(threads=2)) == one
    assert retrieval_metrics(x, y, knn=TorchKNN(threads=3, memory_budget_bytes=40_000)) == one
