"""k-reciprocal re-ranking and query expansion against brute-force references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rerank_reference import query_expansion_reference, re_ranking_reference
from tripletlab.evaluate.dml_protocol import dml_metrics_from_blocks
from tripletlab.evaluate.query_expansion import expand_queries
from tripletlab.evaluate.ranking import BYTES_PER_ENTRY, smallest_k_stable
from tripletlab.evaluate.reid import reid_metrics, reid_metrics_from_blocks
from tripletlab.evaluate.rerank import k_reciprocal_blocks


def _data(seed, n_q=6, n_g=25, dim=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_q, dim)), rng.normal(size=(n_g, dim))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    ("k1", "k2", "lam"), [(20, 6, 0.3), (5, 3, 0.0), (4, 1, 0.5), (7, 2, 1.0), (3, 4, 0.2)]
)
def test_rerank_equals_the_authors_algorithm(seed, k1, k2, lam):
    q, g = _data(seed)
    ref = re_ranking_reference(q, g, k1, k2, lam)
    got = k_reciprocal_blocks(torch.tensor(q), torch.tensor(g), k1=k1, k2=k2, lambda_value=lam)
    assert np.allclose(torch.cat([b for _, b in got]).numpy(), ref, atol=1e-12)


def test_rerank_with_a_tiny_budget_is_chunked_and_equal():
    q, g = _data(3, n_q=9, n_g=30)
    ref = re_ranking_reference(q, g, 6, 3, 0.3)
    budget = (BYTES_PER_ENTRY + 24) * 30 * 2  # two query rows per block
    blocks = list(
        k_reciprocal_blocks(
            torch.tensor(q), torch.tensor(g), k1=6, k2=3, memory_budget_bytes=budget
        )
    )
    assert max(len(b) for _, b in blocks) <= 2 and len(blocks) >= 5
    assert [s for s, _ in blocks] == sorted(s for s, _ in blocks)
    assert np.allclose(torch.cat([b for _, b in blocks]).numpy(), ref, atol=1e-12)


def test_rerank_with_the_queries_as_gallery():
    x, _ = _data(6, n_q=30)
    ref = re_ranking_reference(x, None, 6, 3, 0.3)
    got = k_reciprocal_blocks(torch.tensor(x), k1=6, k2=3, memory_budget_bytes=8000)
    assert np.allclose(torch.cat([b for _, b in got]).numpy(), ref, atol=1e-12)
    y = np.repeat(np.arange(6), 5)
    blocks = k_reciprocal_blocks(torch.tensor(x), k1=6, k2=3)
    metrics = dml_metrics_from_blocks(blocks, y, y, exclude_self=True, ks=(1,))
    assert metrics["n_queries"] == 30


def test_rerank_float32_input_close_to_float64_reference():
    q, g = _data(4)
    ref = re_ranking_reference(q, g, 8, 3, 0.3)
    got = k_reciprocal_blocks(torch.tensor(q).float(), torch.tensor(g).float(), k1=8, k2=3)
    assert np.allclose(torch.cat([b for _, b in got]).numpy(), ref, atol=1e-5)


def test_rerank_lambda_one_keeps_the_original_ranking():
    # d* = d̂ when λ = 1: the rows are only rescaled, so every re-id number is unchanged.
    rng = np.random.default_rng(0)
    query, gallery = torch.tensor(rng.normal(size=(8, 5))), torch.tensor(rng.normal(size=(40, 5)))
    q_ids, g_ids = rng.integers(1, 5, 8), rng.integers(1, 5, 40)
    plain = reid_metrics(query, q_ids, gallery, g_ids, metric="sqeuclidean")
    blocks = k_reciprocal_blocks(query, gallery, k1=6, k2=3, lambda_value=1.0)
    assert reid_metrics_from_blocks(blocks, q_ids, g_ids) == plain
    assert 0 < plain["map"] < 1


@pytest.mark.parametrize("bad", [{"k1": 0}, {"k2": 0}, {"lambda_value": 1.5}, {"k1": 2.0}])
def test_rerank_rejects_bad_options(bad):
    q, g = _data(0)
    with pytest.raises(ValueError, match=next(iter(bad))):
        next(k_reciprocal_blocks(torch.tensor(q), torch.tensor(g), **bad))


@pytest.mark.parametrize(("n", "alpha"), [(1, 0.0), (3, 0.0), (4, 3.0), (30, 1.0)])
def test_query_expansion_matches_reference(n, alpha):
    q, g = _data(5, n_q=7, n_g=20, dim=4)
    ref = query_expansion_reference(q, g, min(n, 20), alpha)
    got = expand_queries(
        torch.tensor(q), torch.tensor(g), n=n, alpha=alpha, memory_budget_bytes=500
    )
    assert np.allclose(got.numpy(), ref, atol=1e-12)
    assert np.allclose(got.norm(dim=1).numpy(), 1.0)


def test_query_expansion_excluding_self():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    got = expand_queries(x, x, n=1, exclude_self=True)
    # Row 0's nearest other is row 2, not itself.
    expected = torch.nn.functional.normalize(
        torch.nn.functional.normalize(x[0], dim=0) + torch.nn.functional.normalize(x[2], dim=0),
        dim=0,
    )
    assert torch.allclose(got[0], expected)


def test_query_expansion_rejects_bad_options():
    x = torch.ones(2, 2)
    with pytest.raises(ValueError, match="n must"):
        expand_queries(x, x, n=0)
    with pytest.raises(ValueError, match="alpha"):
        expand_queries(x, x, alpha=-1.0)


def test_smallest_k_stable_breaks_ties_by_index():
    block = torch.tensor([[2.0, 1.0, 1.0, 1.0, 0.5], [0.0, 0.0, 0.0, 0.0, 0.0]])
    assert smallest_k_stable(block, 3).tolist() == [[4, 1, 2], [0, 1, 2]]
