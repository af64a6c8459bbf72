import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tripletlab.functional import distance, pairwise_distances


def brute_pairwise(x, y, metric):
    out = torch.empty(len(x), len(y), dtype=torch.float64)
    for i in range(len(x)):
        for j in range(len(y)):
            diff = x[i].double() - y[j].double()
            sq = float((diff * diff).sum())
            if metric == "sqeuclidean":
                out[i, j] = sq
            elif metric == "euclidean":
                out[i, j] = sq**0.5
            else:
                nx, ny = float(x[i].double().norm()), float(y[j].double().norm())
                cos = float((x[i].double() * y[j].double()).sum()) / (nx * ny) if nx and ny else 0.0
                out[i, j] = 1 - cos
    return out


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "cosine"])
def test_pairwise_matches_brute_force(metric):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, generator=g, dtype=torch.float64)
    y = torch.randn(4, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(pairwise_distances(x, y, metric), brute_pairwise(x, y, metric))
    torch.testing.assert_close(pairwise_distances(x, metric=metric), brute_pairwise(x, x, metric))
    torch.testing.assert_close(distance(x[:4], y, metric), brute_pairwise(x[:4], y, metric).diag())


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 6),
    d=st.integers(1, 4),
    scale=st.sampled_from([1e-6, 1e-3, 1.0, 1e3, 1e6]),
    offset=st.sampled_from([0.0, 1.0, 1e3]),
    seed=st.integers(0, 2**16),
)
def test_sqeuclidean_is_accurate_at_every_scale(n, d, scale, offset, seed):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, d, generator=g, dtype=torch.float64) + offset) * scale
    got = pairwise_distances(x)
    want = brute_pairwise(x, x, "sqeuclidean")
    assert (got >= 0).all()
    assert torch.equal(got.diag(), torch.zeros(n, dtype=torch.float64))
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9 * float(want.max()) + 1e-300)


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "cosine"])
def test_identical_points_give_finite_gradients(metric):
    x = torch.ones(3, 4, dtype=torch.float64, requires_grad=True)
    pairwise_distances(x, metric=metric).sum().backward()
    assert torch.isfinite(x.grad).all()
    y = torch.ones(3, 4, dtype=torch.float64, requires_grad=True)
    distance(y, y.detach().clone(), metric).sum().backward()
    assert torch.isfinite(y.grad).all()


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "cosine"])
def test_gradcheck(metric):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: pairwise_distances(a, b, metric), (x, y))


def test_half_precision_is_computed_in_float32():
    x = torch.randn(4, 3).half()
    assert pairwise_distances(x).dtype == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"x": torch.zeros(3, 2), "metric": "manhattan"}, ValueError, "metric"),
        ({"x": torch.zeros(3, 2, dtype=torch.long)}, TypeError, "floating"),
        ({"x": torch.zeros(3)}, ValueError, "dimensions"),
        ({"x": torch.tensor([[float("nan"), 0.0]])}, ValueError, "NaN"),
        ({"x": torch.zeros(3, 2), "y": torch.zeros(3, 4)}, ValueError, "dimension"),
    ],
)
def test_bad_input_names_the_problem(kwargs, error, match):
    with pytest.raises(error, match=match):
        pairwise_distances(**kwargs)
