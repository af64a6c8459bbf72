"""TorchKNN against a brute-force stable sort: every metric, dtype, chunk size, exclusion, tie."""

from __future__ import annotations

import pytest
import torch

from retrieval_reference import naive_distances, naive_knn
from tripletlab.evaluate import KNNBackend, KNNResult, TorchKNN, iter_knn

METRICS = ("sqeuclidean", "euclidean", "cosine")


def _data(n: int, m: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(m, d, generator=g)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("budget", [1, 5_000, 2**29])
def test_matches_brute_force_with_separate_references(metric, dtype, budget):
    queries, references = _data(37, 53, 6)
    found = TorchKNN(memory_budget_bytes=budget).search(
        queries.to(dtype), 9, references.to(dtype), metric=metric
    )
    distances, indices = naive_knn(queries, references, 9, metric)
    assert found.indices.dtype == torch.int64 and found.distances.dtype == dtype
    assert torch.equal(found.indices, indices)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(found.distances.double(), distances, atol=tol, rtol=tol)


@pytest.mark.parametrize("metric", METRICS)
def test_self_search_excludes_each_query(metric):
    x, _ = _data(40, 1, 5, seed=1)
    found = TorchKNN(memory_budget_bytes=3_000).search(x, 39, metric=metric)
    _, indices = naive_knn(x, None, 39, metric)
    assert torch.equal(found.indices, indices)
    assert not (found.indices == torch.arange(40)[:, None]).any()


def test_ties_are_broken_by_reference_index_whatever_the_chunking():
    # Each point four times: duplicates have exactly equal computed distances to any query.
    g = torch.Generator().manual_seed(2)
    x = torch.randn(15, 3, generator=g).repeat(4, 1)
    expected = naive_knn(x, None, 20, "sqeuclidean")[1]
    for budget in (1, 10_000, 2**30):
        found = TorchKNN(memory_budget_bytes=budget).search(x, 20)
        assert torch.equal(found.indices, expected)
        assert torch.equal(found.indices[:, :3], expected[:, :3])  # the 3 copies, by index


def test_duplicate_of_the_query_is_kept_but_the_query_is_not():
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [5.0, 5.0]])
    found = TorchKNN().search(x, 2)
    assert found.indices.tolist() == [[1, 2], [0, 2], [0, 1]]
    assert found.distances[:, 0].tolist()[:2] == [0.0, 0.0]


def test_explicit_exclude_with_minus_one_meaning_none():
    x, refs = _data(4, 10, 3, seed=3)
    plain = TorchKNN().search(x, 3, refs)
    exclude = torch.tensor([-1, int(plain.indices[1, 0]), -1, int(plain.indices[3, 1])])
    found = TorchKNN().search(x, 3, refs, exclude=exclude)
    assert torch.equal(found.indices[0], plain.indices[0])
    assert int(plain.indices[1, 0]) not in found.indices[1].tolist()
    assert int(plain.indices[3, 1]) not in found.indices[3].tolist()


def test_large_offsets_keep_the_ranking():
    x, refs = _data(20, 30, 4, seed=4)
    shift = 1e4
    found = TorchKNN().search(x + shift, 5, refs + shift)
    assert torch.equal(found.indices, naive_knn(x, refs, 5, "sqeuclidean")[1])


def test_iter_search_chunks_reassemble_to_search():
    x, refs = _data(25, 40, 3, seed=5)
    knn = TorchKNN()
    whole = knn.search(x, 4, refs)
    starts, parts = zip(*knn.iter_search(x, 4, refs, rows=7), strict=True)
    assert list(starts) == [0, 7, 14, 21]
    assert torch.equal(torch.cat([p.indices for p in parts]), whole.indices)


def test_iter_knn_uses_search_for_backends_without_iter_search():
    class SearchOnly:
        def __init__(self) -> None:
            self.calls = 0

        def search(self, queries, k, references=None, *, metric="sqeuclidean", exclude=None):
            self.calls += 1
            return TorchKNN().search(queries, k, references, metric=metric, exclude=exclude)

    backend = SearchOnly()
    assert isinstance(backend, KNNBackend)
    x, _ = _data(10, 1, 3, seed=6)
    chunks = list(iter_knn(backend, x, 3, rows=4))
    assert backend.calls == 3
    indices = torch.cat([c.indices for _, c in chunks])
    assert torch.equal(indices, naive_knn(x, None, 3, "sqeuclidean")[1])


def test_torchknn_satisfies_the_protocol_and_returns_a_named_tuple():
    assert isinstance(TorchKNN(), KNNBackend)
    result = TorchKNN().search(torch.randn(3, 2), 1)
    assert isinstance(result, KNNResult) and result.indices.shape == (3, 1)


def test_empty_queries_give_empty_results():
    found = TorchKNN().search(torch.empty(0, 3), 2, torch.randn(5, 3))
    assert found.indices.shape == (0, 2) and found.distances.shape == (0, 2)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"k": 0}, ValueError, "k must be between 1"),
        ({"k": 5}, ValueError, r"eligible references \(4\)"),
        ({"k": 2.0}, TypeError, "k must be an int"),
        ({"k": 1, "metric": "manhattan"}, ValueError, "metric must be one of"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        TorchKNN().search(torch.randn(5, 2), **kwargs)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="same dimension"):
        TorchKNN().search(torch.randn(3, 2), 1, torch.randn(4, 3))
    with pytest.raises(ValueError, match="NaN or Inf"):
        TorchKNN().search(torch.tensor([[float("nan")], [1.0]]), 1)
    with pytest.raises(ValueError, match="exclude values"):
        TorchKNN().search(torch.randn(2, 2), 1, torch.randn(3, 2), exclude=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="memory_budget_bytes"):
        TorchKNN(memory_budget_bytes=0)


def _cpu_keys(block: torch.Tensor, k: int, sample=None) -> torch.Tensor:
    import numpy as np

    from tripletlab.evaluate.selection import smallest_k_keys_cpu

    out = np.empty((len(block), k), dtype=np.int64)
    return torch.from_numpy(smallest_k_keys_cpu(block, k, sample, out).copy())


def test_torch_topk_key_path_equals_the_numpy_path():
    # The CUDA path (torch.topk on int64 keys) checked on CPU against the numpy path,
    # including negative rounding noise, −0.0, +inf (an excluded entry) and duplicates.
    from tripletlab.evaluate.selection import smallest_k_keys_torch

    g = torch.Generator().manual_seed(7)
    block = torch.rand(13, 50, generator=g)
    block[:, 5] = block[:, 6]
    block[0, :3] = torch.tensor([-1e-7, -0.0, float("inf")])
    keys = torch.empty(13, 50, dtype=torch.int64)
    for k in (1, 7, 50):
        expected = _cpu_keys(block.clone(), k)
        assert torch.equal(smallest_k_keys_torch(block.clone(), k, keys), expected)
    top = _cpu_keys(block, 3)
    assert (top[0] & (2**31 - 1)).tolist()[:2] == [0, 1]  # −1e-7 and −0.0 count as +0.0


@pytest.mark.parametrize("k", [1, 40, 300, 2000])
def test_sampled_threshold_selection_equals_full_selection(k):
    # Rows with a sampled threshold (the fast path), rows whose estimate is too low
    # (the fallback: all entries below the sample made tiny), ties and zeros.
    from tripletlab.evaluate.selection import threshold_sample

    g = torch.Generator().manual_seed(9)
    block = torch.rand(6, 5000, generator=g)
    block[1, 100:200] = block[1, 50]  # many exact ties
    block[2, :] = 0.0  # all zero: keys order by index alone
    sample = threshold_sample(5000, k)
    assert sample is not None
    columns, _ = sample
    unsampled = torch.ones(5000, dtype=torch.bool)
    unsampled[torch.from_numpy(columns)] = False
    block[3, unsampled] = block[3, unsampled] * 1e-3  # estimate far too high: still exact
    block[4, ~unsampled] = block[4, ~unsampled] * 1e-3  # estimate too low: fallback
    expected = _cpu_keys(block.clone(), k)
    assert torch.equal(_cpu_keys(block.clone(), k, sample), expected)
    values = block.clamp_min(0)
    order = torch.from_numpy(
        __import__("numpy").lexsort((torch.arange(5000).expand(6, -1).numpy(), values.numpy()))
    )
    assert torch.equal(expected & (2**31 - 1), order[:, :k])


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_results_do_not_depend_on_threads_or_chunking_and_threads_are_restored(threads):
    x, refs = _data(70, 3000, 4, seed=8)
    before = torch.get_num_threads()
    expected = naive_knn(x, refs, 200, "sqeuclidean")[1]
    for rows in (None, 1, 9):
        found = TorchKNN(threads=threads).search(x, 200, refs) if rows is None else None
        if rows is not None:
            parts = TorchKNN(threads=threads).iter_search(x, 200, refs, rows=rows)
            found = KNNResult(*map(torch.cat, zip(*[tuple(p) for _, p in parts], strict=True)))
        assert torch.equal(found.indices, expected)
    assert torch.get_num_threads() == before


def test_map_chunks_runs_fn_per_chunk_in_order():
    x, refs = _data(50, 60, 3, seed=10)
    knn = TorchKNN(threads=2)
    out = list(knn.map_chunks(x, 4, refs, fn=lambda s, r: (s, r.indices[:, 0]), rows=7))
    assert [start for start, _ in out] == list(range(0, 50, 7))
    assert all(start == inner for start, (inner, _) in out)
    firsts = torch.cat([first for _, (_, first) in out])
    assert torch.equal(firsts, naive_knn(x, refs, 1, "sqeuclidean")[1][:, 0])


def test_mask_fn_excludes_per_query_and_puts_masked_entries_last():
    x, refs = _data(12, 20, 3, seed=11)
    groups = torch.arange(20) % 4
    query_groups = torch.arange(12) % 4

    def mask_fn(start: int, stop: int) -> torch.Tensor:
        return query_groups[start:stop, None] == groups[None, :]

    found = TorchKNN(threads=2).search(x, 20, refs, mask_fn=mask_fn)
    eligible = 15
    assert not (groups[found.indices[:, :eligible]] == query_groups[:, None]).any()
    assert torch.isinf(found.distances[:, eligible:]).all()
    distances = naive_distances(x, refs, "sqeuclidean")
    distances[mask_fn(0, 12)] = float("inf")
    expected = torch.sort(distances, dim=1, stable=True).indices[:, :eligible]
    assert torch.equal(found.indices[:, :eligible], expected)


def test_mask_fn_with_a_wrong_shape_is_named():
    with pytest.raises(ValueError, match="mask_fn must return a bool tensor"):
        TorchKNN().search(
            torch.randn(3, 2), 1, torch.randn(4, 2), mask_fn=lambda s, e: torch.ones(1)
        )


def test_an_error_in_fn_or_an_early_stop_leaves_no_thread_setting_behind():
    x, refs = _data(60, 80, 3, seed=12)
    before = torch.get_num_threads()

    def failing(start: int, result: KNNResult) -> None:
        if start >= 20:
            raise RuntimeError("boom in chunk")

    with pytest.raises(RuntimeError, match="boom in chunk"):
        list(TorchKNN(threads=2).map_chunks(x, 3, refs, fn=failing, rows=10))
    assert torch.get_num_threads() == before
    chunks = TorchKNN(threads=2).iter_search(x, 3, refs, rows=10)
    next(chunks)
    chunks.close()  # the consumer stops early: pending chunks are cancelled
    assert torch.get_num_threads() == before
