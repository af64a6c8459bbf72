"""Backend choice for an evaluation, and the exact-vs-approximate gap of each metric."""

from __future__ import annotations

import pytest
import torch

from tripletlab.evaluate import (
    FaissKNN,
    TorchKNN,
    approximation_gap,
    evaluate_embeddings,
    make_knn_backend,
    retrieval_metrics,
)

pytest.importorskip("faiss")


def _clustered(n: int = 600, classes: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    centres = torch.randn(classes, 8, generator=g)
    return centres[labels] + 0.8 * torch.randn(n, 8, generator=g), labels


def test_make_knn_backend_builds_each_method():
    exact = make_knn_backend("exact", memory_budget_bytes=1000, threads=1)
    assert isinstance(exact, TorchKNN) and exact.memory_budget_bytes == 1000
    assert exact.threads == 1
    ivf = make_knn_backend("ivf", nprobe=3, nlist=7)
    assert isinstance(ivf, FaissKNN) and ivf.index_type == "ivf" and ivf.nprobe == 3
    assert make_knn_backend("hnsw", ef_search=50).ef_search == 50
    with pytest.raises(ValueError, match="method must be one of"):
        make_knn_backend("annoy")
    with pytest.raises(ValueError, match="need a faiss method"):
        make_knn_backend("exact", nprobe=3)
    with pytest.raises(ValueError, match="faiss methods run on CPU"):
        make_knn_backend("ivf", device="cuda")


def test_gap_is_zero_for_exact_backends_and_the_exact_side_is_right():
    x, y = _clustered()
    found = approximation_gap(x, y, FaissKNN("flat"), n_queries=None, ks=(1, 4))
    assert found["n_sampled"] == 600
    assert all(value == pytest.approx(0, abs=1e-12) for value in found["gap"].values())
    whole = retrieval_metrics(x, y, ks=(1, 4))
    assert found["exact"] == pytest.approx(whole, abs=1e-12)


def test_ivf_gap_is_measured_on_a_sample_against_all_references():
    x, y = _clustered(2000, 40, seed=1)
    # 1 of 40 cells probed: many true neighbours are missed, some lists come back short.
    coarse = FaissKNN("ivf", nlist=40, nprobe=1)
    found = approximation_gap(x, y, coarse, n_queries=300, seed=3, ks=(1, 10))
    assert found["n_sampled"] == 300
    # Either sign: a cell ≈ a class, so the neighbours IVF returns can be more often of
    # the query's class than the true nearest ones.
    assert abs(found["gap"]["map_at_r"]) > 0.01
    for side in ("exact", "approximate"):
        assert 0 <= found[side]["map_at_r"] <= 1
    # all cells probed: IVF is exact again
    full = approximation_gap(
        x, y, FaissKNN("ivf", nlist=40, nprobe=40), n_queries=300, seed=3, ks=(1, 10)
    )
    assert all(value == pytest.approx(0, abs=1e-12) for value in full["gap"].values())


def test_evaluate_embeddings_reports_the_gap_of_an_approximate_method():
    x, y = _clustered(800, 16, seed=2)
    found = evaluate_embeddings(
        x,
        y,
        ks=(1,),
        method="ivf",
        knn_options={"nlist": 16, "nprobe": 2},
        gap_queries=200,
        verification=False,
        clustering=False,
    )
    assert found["approximation_gap_queries"] == 200
    assert "map_at_r_approximation_gap" in found and "precision_at_1_approximation_gap" in found
    exact = evaluate_embeddings(x, y, ks=(1,), threads=1, verification=False, clustering=False)
    assert "map_at_r_approximation_gap" not in exact
    assert exact["map_at_r"] == retrieval_metrics(x, y, ks=(1,))["map_at_r"]
    with pytest.raises(ValueError, match="either knn or method"):
        evaluate_embeddings(x, y, knn=TorchKNN(), method="ivf")
    with pytest.raises(ValueError, match="need a faiss method"):
        evaluate_embeddings(x, y, knn_options={"nprobe": 2})
