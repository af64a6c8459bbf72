"""The screened matrix of the dense pair forms decides every comparison as the direct one.

functional/_screened_distances.py computes a small batch's distances by a float64 Gram
matrix and recomputes directly only the entries within its error bound of a decision
(functional/_dense_pairs.py). Here the differences t = d_ap + m − d_an it produces must have,
entry by entry, the sign of the same differences taken on the direct matrix (every entry by
direct differences, functional/_refined_distances.py), on random, integer (tied) and
duplicated rows and on rows built to sit a few ulps from a decision.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tripletlab.functional._dense_pairs import pair_differences, pair_rows
from tripletlab.functional._refined_distances import direct_distances
from tripletlab.functional._screened_distances import ScreenedDistances


def _direct_differences(x, y, metric, offset):
    """(P, B) d_ap + offset − d_an on the direct matrix, −inf off the negatives."""
    batch = pair_rows(x, y, metric, max_elements=10**9)
    _, values = direct_distances(batch.rows.x, metric)
    anchors, positives, _ = batch.pairs
    critical = values[anchors, positives] + offset
    t = critical[:, None] - values[anchors]
    return t.masked_fill(batch.same[anchors], -math.inf)


def _screened_differences(x, y, metric, offset):
    batch = pair_rows(x, y, metric, max_elements=10**9)
    distances = ScreenedDistances(batch.rows.x, metric, batch.rows.largest)
    t, _ = pair_differences(distances, batch.pairs, batch.same, offset, exact=True)
    return t


def _rows(seed, n, dim, copies, integer):
    g = torch.Generator().manual_seed(seed)
    x = (
        torch.randint(-2, 3, (n, dim), generator=g).float()
        if integer
        else torch.randn(n, dim, generator=g)
    )
    for _ in range(copies):
        src, dst = torch.randint(0, n, (2,), generator=g).tolist()
        x[dst] = x[src]
    return x, torch.randint(0, 3, (n,), generator=g)


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 40),
    dim=st.integers(1, 16),
    copies=st.integers(0, 5),
    integer=st.booleans(),
    metric=st.sampled_from(["sqeuclidean", "euclidean", "cosine"]),
    offset=st.sampled_from([0.0, 0.5, 1.0, 0.2]),
)
def test_screened_signs_are_the_direct_signs(seed, n, dim, copies, integer, metric, offset):
    x, y = _rows(seed, n, dim, copies, integer)
    got = _screened_differences(x, y, metric, offset)
    want = _direct_differences(x, y, metric, offset)
    assert torch.equal(torch.sign(got), torch.sign(want))


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean"])
@pytest.mark.parametrize("ulps", [0, 1, 2, 3])
def test_near_ties_a_few_ulps_apart(metric, ulps):
    # anchor at 0, positive at distance 1, negatives at 1 + m + k ulps (k ∈ [−ulps, ulps]):
    # every comparison d_an < d_ap + m sits within a few ulps of its decision
    m = 0.25
    base = torch.tensor(1.0 + m)
    steps = [base]
    up, down = base, base
    for _ in range(ulps):
        up = torch.nextafter(up, torch.tensor(2.0))
        down = torch.nextafter(down, torch.tensor(0.0))
        steps += [up, down]
    radius = torch.stack(steps)
    if metric == "sqeuclidean":
        radius = radius.sqrt()  # d_an = radius² then
    angles = torch.linspace(0.3, 2.8, len(radius))
    negatives = torch.stack([radius * torch.cos(angles), radius * torch.sin(angles)], 1)
    x = torch.cat([torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), negatives])
    y = torch.tensor([0, 0] + [1] * len(radius))
    got = _screened_differences(x, y, metric, m)
    want = _direct_differences(x, y, metric, m)
    assert torch.equal(torch.sign(got), torch.sign(want))
