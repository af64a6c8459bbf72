"""The tie machinery's block sizes change the speed only, never a number or a decision.

``direct_squared`` computes its pairs in cache-sized blocks and ``_meets_critical`` tests the
intervals either by one broadcast or by two binary searches (functional/_ties.py): each way
is compared here with the other and with a plain reference.
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tripletlab.functional import _ties


def test_direct_squared_in_blocks_equals_one_pass_and_ties_stay_bitwise_equal(monkeypatch):
    g = torch.Generator().manual_seed(0)
    dim = 64
    x = torch.randn(20, dim, generator=g)
    x[7] = x[3]  # identical rows: their pairs with any third row must give identical bits
    wide = _ties.widen(x)
    rows = torch.randint(0, 20, (300,), generator=g)
    cols = torch.randint(0, 20, (300,), generator=g)
    rows[:2], cols[:2] = torch.tensor([3, 7]), torch.tensor([11, 11])
    reference = ((wide[rows] - wide[cols]) ** 2).sum(1).to(torch.float32)
    monkeypatch.setattr(_ties, "_DIRECT_ELEMENTS_PER_CHUNK", 7 * dim)  # 7 pairs a block
    blocked = _ties.direct_squared(wide, wide, rows, cols, torch.float32)
    assert torch.equal(blocked, reference)
    assert blocked[0].item() == blocked[1].item()
    assert (blocked[rows == cols] == 0).all()


@settings(max_examples=40)
@given(
    n_rows=st.integers(1, 6),
    n_cols=st.integers(1, 7),
    n_intervals=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    grid=st.booleans(),
)
def test_interval_test_by_broadcast_equals_by_binary_search(
    n_rows, n_cols, n_intervals, seed, grid
):
    g = torch.Generator().manual_seed(seed)

    def draw(*shape):
        # a coarse grid makes interval ends coincide with entry bounds (closed intervals)
        values = torch.rand(*shape, generator=g, dtype=torch.float64)
        return (values * 8).round() / 8 if grid else values

    center, radius = draw(n_rows, n_cols), draw(n_rows, n_cols) / 4
    low = draw(n_rows, n_intervals).sort(1).values
    high = (low + draw(n_rows, n_intervals) / 4).sort(1).values
    lower, upper = center - radius, center + radius
    expected = (
        (low[:, :, None] <= upper[:, None, :]) & (high[:, :, None] >= lower[:, None, :])
    ).any(1)
    by_search = _ties._meets_critical_by_search(lower, upper, low, high)
    by_broadcast = _ties._meets_critical_by_broadcast(lower, upper, low, high)
    assert torch.equal(by_search, expected)
    assert torch.equal(by_broadcast, expected)
