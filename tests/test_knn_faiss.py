"""The faiss kNN backend: the exact flat index equals the torch backend; IVF/HNSW recall."""

from __future__ import annotations

import sys

import pytest
import torch

from tripletlab.evaluate.knn import KNNBackend, KNNResult, TorchKNN

bench = pytest.mark.bench


def _faiss_knn():
    pytest.importorskip("faiss")
    from tripletlab.evaluate import knn_faiss

    return knn_faiss


def test_missing_faiss_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from tripletlab.evaluate import knn_faiss

    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss → ImportError
    with pytest.raises(ImportError, match=r"pip install tripletlab\[faiss\]"):
        knn_faiss.FaissKNN("flat")


def test_recall_at_k_counts_shared_neighbours() -> None:
    from tripletlab.evaluate.knn_faiss import recall_at_k

    exact = KNNResult(torch.zeros(2, 3), torch.tensor([[0, 1, 2], [3, 4, 5]]))
    approx = KNNResult(torch.zeros(2, 3), torch.tensor([[2, 1, 9], [-1, -1, 5]]))
    assert recall_at_k(approx, exact) == pytest.approx(3 / 6)


@bench
@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "cosine"])
def test_flat_index_equals_torch_backend(metric: str) -> None:
    knn_faiss = _faiss_knn()
    gen = torch.Generator().manual_seed(0)
    refs = torch.randn(600, 16, generator=gen) + 5.0  # an offset: centring must match
    queries = torch.randn(90, 16, generator=gen) + 5.0
    backend = knn_faiss.FaissKNN("flat", query_chunk=32)
    assert isinstance(backend, KNNBackend)
    got = backend.search(queries, 10, refs, metric=metric)
    want = TorchKNN().search(queries, 10, refs, metric=metric)
    assert torch.equal(got.indices, want.indices)
    torch.testing.assert_close(got.distances, want.distances, rtol=1e-5, atol=1e-5)


@bench
def test_flat_self_search_excludes_each_query_and_orders_ties_by_index() -> None:
    knn_faiss = _faiss_knn()
    # integer points on a small grid, each twice: many exact ties
    grid = torch.cartesian_prod(torch.arange(4.0), torch.arange(4.0))
    points = torch.cat([grid, grid])
    got = knn_faiss.FaissKNN("flat").search(points, 5)
    want = TorchKNN().search(points, 5)
    assert torch.equal(got.indices, want.indices)
    assert torch.equal(got.distances, want.distances)
    assert not (got.indices == torch.arange(len(points))[:, None]).any()
    # the duplicate of each point comes first, at distance 0
    twin = (torch.arange(len(points)) + len(grid)) % len(points)
    assert torch.equal(got.indices[:, 0], twin)
    assert torch.equal(got.distances[:, 0], torch.zeros(len(points)))


@bench
def test_explicit_exclude_matches_torch_backend() -> None:
    knn_faiss = _faiss_knn()
    gen = torch.Generator().manual_seed(1)
    refs = torch.randn(200, 8, generator=gen)
    queries = refs[:50] + 0.01 * torch.randn(50, 8, generator=gen)
    exclude = torch.arange(50)
    exclude[::3] = -1
    got = knn_faiss.FaissKNN("flat").search(queries, 4, refs, exclude=exclude)
    want = TorchKNN().search(queries, 4, refs, exclude=exclude)
    assert torch.equal(got.indices, want.indices)
    kept = exclude >= 0
    assert not (got.indices[kept] == exclude[kept][:, None]).any()
    assert (got.indices[~kept][:, 0] == torch.arange(50)[~kept]).all()


@bench
@pytest.mark.parametrize(
    ("index_type", "options"),
    [("ivf", {"nlist": 16, "nprobe": 8}), ("hnsw", {"hnsw_m": 16, "ef_search": 64})],
)
def test_approximate_indexes_reach_high_recall(index_type: str, options: dict) -> None:
    knn_faiss = _faiss_knn()
    gen = torch.Generator().manual_seed(2)
    centres = 4 * torch.randn(20, 12, generator=gen)
    refs = centres[torch.arange(2000) % 20] + torch.randn(2000, 12, generator=gen)
    queries = refs[:300] + 0.1 * torch.randn(300, 12, generator=gen)
    backend = knn_faiss.FaissKNN(index_type, **options)
    recall = backend.recall(queries, 10, refs)
    assert 0.9 <= recall <= 1.0
    result = backend.search(queries, 10, refs)
    assert result.indices.shape == (300, 10)
    # distances are exact for the neighbours returned, and sorted
    exact_d = ((queries[:, None, :] - refs[result.indices]) ** 2).sum(-1)
    torch.testing.assert_close(result.distances, exact_d, rtol=1e-4, atol=1e-4)
    assert (result.distances[:, 1:] >= result.distances[:, :-1]).all()


@bench
def test_low_recall_warns_when_min_recall_is_set() -> None:
    knn_faiss = _faiss_knn()
    gen = torch.Generator().manual_seed(3)
    refs = torch.randn(3000, 32, generator=gen)  # no structure: IVF with 1 probe misses a lot
    backend = knn_faiss.FaissKNN("ivf", nlist=64, nprobe=1, min_recall=0.99, recall_sample=200)
    with pytest.warns(RuntimeWarning, match="below min_recall"):
        backend.search(refs[:200], 10, refs)
    assert backend.recall(refs[:200], 10, refs) < 0.99


@bench
def test_built_index_is_reused_and_arguments_are_checked() -> None:
    knn_faiss = _faiss_knn()
    refs = torch.randn(100, 4)
    index = knn_faiss.FaissKNN("flat").build(refs, metric="euclidean")
    first = index.search(refs[:5], 3)
    assert torch.equal(first.indices[:, 0], torch.arange(5))
    with pytest.raises(ValueError, match="index_type"):
        knn_faiss.FaissKNN("lsh")
    with pytest.raises(ValueError, match="nprobe"):
        knn_faiss.FaissKNN("ivf", nprobe=0)
    with pytest.raises(ValueError, match="k must be between"):
        index.search(refs[:5], 101)
    with pytest.raises(ValueError, match="dimension"):
        index.search(torch.randn(2, 5), 1)


@bench
def test_iter_search_through_iter_knn_matches_one_search() -> None:
    knn_faiss = _faiss_knn()
    from tripletlab.evaluate.knn import iter_knn

    refs = torch.randn(300, 6, generator=torch.Generator().manual_seed(4))
    backend = knn_faiss.FaissKNN("flat")
    parts = list(iter_knn(backend, refs, 5, rows=64))
    assert [start for start, _ in parts] == [0, 64, 128, 192, 256]
    indices = torch.cat([r.indices for _, r in parts])
    assert torch.equal(indices, TorchKNN().search(refs, 5).indices)


@bench
@pytest.mark.parametrize("metric", ["sqeuclidean", "cosine"])
def test_retrieval_metrics_with_faiss_flat_equal_the_torch_backend(metric: str) -> None:
    knn_faiss = _faiss_knn()
    from tripletlab.evaluate.retrieval import retrieval_metrics

    gen = torch.Generator().manual_seed(7)
    labels = torch.randint(0, 8, (500,), generator=gen)
    emb = torch.randn(500, 12, generator=gen) + 0.8 * torch.nn.functional.one_hot(labels, 12)
    want = retrieval_metrics(emb, labels, metric=metric)
    got = retrieval_metrics(emb, labels, metric=metric, knn=knn_faiss.FaissKNN("flat"))
    assert got == want


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "cosine"])
def test_an_exhaustive_ivf_orders_ties_and_excludes_like_the_torch_backend(metric: str) -> None:
    knn_faiss = _faiss_knn()
    # integer grid points, each twice, off the origin (cosine needs a direction): many exact
    # L2 ties, which faiss's own distances must order by index exactly as the torch backend
    grid = torch.cartesian_prod(torch.arange(1.0, 5.0), torch.arange(1.0, 5.0))
    points = torch.cat([grid, grid])
    backend = knn_faiss.FaissKNN("ivf", nlist=1, nprobe=1, query_chunk=7)
    got = backend.search(points, 6, metric=metric)
    want = TorchKNN().search(points, 6, metric=metric)
    torch.testing.assert_close(got.distances, want.distances, rtol=1e-6, atol=1e-6)
    if metric != "cosine":  # cosines of collinear points are 0 only up to rounding
        assert torch.equal(got.indices, want.indices)
    assert not (got.indices == torch.arange(len(points))[:, None]).any()


def test_neighbours_an_ivf_cannot_reach_are_last_as_minus_one_at_infinity() -> None:
    knn_faiss = _faiss_knn()
    gen = torch.Generator().manual_seed(5)
    centres = 50 * torch.eye(4)  # 4 far clusters: one probed cell holds one cluster
    refs = centres[torch.arange(400) % 4] + torch.randn(400, 4, generator=gen)
    found = knn_faiss.FaissKNN("ivf", nlist=4, nprobe=1).search(refs, 150)
    missing = found.indices < 0
    assert missing[:, -1].all() and not missing[:, 0].any()  # 99 per cell: 51 slots empty
    assert torch.isinf(found.distances[missing]).all()
    assert torch.isfinite(found.distances[~missing]).all()
    assert not (found.indices == torch.arange(400)[:, None]).any()  # each query left out


def test_the_index_is_built_once_per_reference_set() -> None:
    knn_faiss = _faiss_knn()
    refs = torch.randn(300, 4, generator=torch.Generator().manual_seed(6))
    backend = knn_faiss.FaissKNN("ivf", nlist=4)
    index = backend.build(refs)
    assert backend.build(refs.detach()) is index  # same memory, unchanged: reused
    assert backend.build(refs, metric="cosine") is not index  # another metric
    again = backend.build(refs)
    refs[0] += 1.0  # changed in place: the index is stale
    rebuilt = backend.build(refs)
    assert rebuilt is not again
    assert torch.equal(rebuilt.references[0], refs[0])
    assert backend.build(refs.clone()) is not rebuilt  # equal values, other memory
