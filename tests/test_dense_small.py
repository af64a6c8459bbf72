"""The small-batch dense forms give the general path's numbers: values, gradients, decisions.

The batch losses take dense B×B / (pairs, B) forms for small batches against themselves
(functional/_dense_small.py, _dense_pairs.py, _dense_semi_hard.py) and the bucketed, refined
path otherwise. Both must compute the
same loss: here every case runs as the user gets it (dense, float32) and again with the dense
forms switched off (in float64), on random, tied and duplicated rows.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tripletlab.functional._dense_semi_hard as dense_semi_hard
from batch_references import batch_all_reference, batch_semi_hard_reference
from conftest import force_general_loss_path
from tripletlab.functional import (
    batch_all_triplet_loss,
    batch_hard_triplet_loss,
    batch_semi_hard_triplet_loss,
)

LOSSES = {
    "all": batch_all_triplet_loss,
    "hard": batch_hard_triplet_loss,
    "semi_hard": batch_semi_hard_triplet_loss,
}


def _rows(seed: int, n: int, dim: int, n_classes: int, n_copies: int, integer: bool):
    g = torch.Generator().manual_seed(seed)
    if integer:
        x = torch.randint(-2, 3, (n, dim), generator=g).float()
    else:
        x = torch.randn(n, dim, generator=g)
    for _ in range(n_copies):
        src, dst = torch.randint(0, n, (2,), generator=g).tolist()
        x[dst] = x[src]
    return x, torch.randint(0, n_classes, (n,), generator=g)


def _loss_and_grad(loss, x, y, kwargs):
    xx = x.clone().requires_grad_()
    value = loss(xx, y, **kwargs)
    value.sum().backward()
    return value.detach(), xx.grad


def _general_path(monkeypatch):
    force_general_loss_path(monkeypatch)


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 24),
    dim=st.integers(1, 8),
    n_classes=st.integers(1, 5),
    n_copies=st.integers(0, 4),
    integer=st.booleans(),
    name=st.sampled_from(sorted(LOSSES)),
    metric=st.sampled_from(["sqeuclidean", "euclidean", "cosine"]),
    margin=st.sampled_from([0.0, 0.2, 1.0]),
    smoothing=st.sampled_from([None, 0.5]),
    reduction=st.sampled_from(["mean", "mean_active", "sum", "none"]),
    fallback=st.sampled_from(["hardest", "easiest", "skip"]),
    semi_hard_search=st.booleans(),
)
def test_dense_equals_general_path(
    seed,
    n,
    dim,
    n_classes,
    n_copies,
    integer,
    name,
    metric,
    margin,
    smoothing,
    reduction,
    fallback,
    semi_hard_search,
):
    x, y = _rows(seed, n, dim, n_classes, n_copies, integer)
    kwargs = dict(margin=margin, metric=metric, smoothing=smoothing, reduction=reduction)
    if name == "semi_hard":
        kwargs["fallback"] = fallback
    loss = LOSSES[name]
    with pytest.MonkeyPatch.context() as monkeypatch:
        if semi_hard_search:  # semi-hard's search form, not its (P, B) differences
            monkeypatch.setattr(dense_semi_hard, "SEMI_HARD_DIFFERENCES_MAX_ELEMENTS", 0)
        dense_value, dense_grad = _loss_and_grad(loss, x, y, kwargs)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _general_path(monkeypatch)
        # in float64: the general path's float32 GEMM distances are the less accurate ones
        # near 0 (where the euclidean gradient 1/(2d) amplifies them), so compare with the
        # exact numbers the dense float32 form must round to — except cosine between
        # parallel integer rows ((1, 1, 0), (2, 2, 0)): their float32 unit rows may differ in
        # the last bit, so an exact float64 tie is not one in float32 for either path
        parallel_ties = integer and metric == "cosine"
        # and the smoothed loss's active terms (> 0) are those whose softplus has not
        # underflowed: where it does depends on the dtype, so "mean_active" compares float32
        underflow_counts = bool(smoothing) and reduction == "mean_active"
        same_dtype = parallel_ties or underflow_counts
        value, grad = _loss_and_grad(loss, x if same_dtype else x.double(), y, kwargs)
    value, grad = value.float(), grad.float()
    torch.testing.assert_close(dense_value, value, rtol=1e-5, atol=1e-5)
    if not integer and n_copies == 0:
        # with exact ties any tied candidate is a valid choice (the same loss, a gradient
        # on another row): gradients are compared where the choice is unique
        torch.testing.assert_close(dense_grad, grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean"])
def test_dense_batch_all_counts_ties_as_the_definition(metric):
    # integer rows, dyadic margin: d_an = d_ap + m exactly for many triplets; "active" is the
    # strict d_an < d_ap + m of the brute force, in float32 as in float64
    x, y = _rows(3, 40, 2, 3, 6, integer=True)
    for reduction in ("mean_active", "mean", "sum"):
        got = batch_all_triplet_loss(x, y, margin=1.0, metric=metric, reduction=reduction)
        want = batch_all_reference(x.double(), y, margin=1.0, metric=metric, reduction=reduction)
        torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("search", [False, True])
@pytest.mark.parametrize("fallback", ["hardest", "easiest", "skip"])
def test_dense_semi_hard_on_ties_as_the_definition(fallback, search, monkeypatch):
    if search:  # the sort-and-search form, whose tied neighbours go to the differences
        monkeypatch.setattr(dense_semi_hard, "SEMI_HARD_DIFFERENCES_MAX_ELEMENTS", 0)
    x, y = _rows(5, 48, 2, 4, 8, integer=True)
    got = batch_semi_hard_triplet_loss(x, y, margin=0.5, metric="euclidean", fallback=fallback)
    want = batch_semi_hard_reference(
        x.double(), y, margin=0.5, metric="euclidean", fallback=fallback
    )
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)


def test_dense_forms_are_taken_for_small_batches(monkeypatch):
    # the dense forms are what a user gets at B ≤ 64 (no positive index is built)
    import tripletlab.functional._batch_input as batch_input

    def refuse(*args, **kwargs):
        raise AssertionError("the general path ran")

    monkeypatch.setattr(batch_input, "positive_index_matrix", refuse)
    x, y = _rows(0, 64, 16, 8, 0, integer=False)
    for name, loss in LOSSES.items():
        assert torch.isfinite(loss(x, y, metric="euclidean")), name


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "cosine"])
@pytest.mark.parametrize(("smoothing", "reduction"), [(None, "mean"), (0.3, "none")])
def test_dense_forms_gradcheck(name, metric, smoothing, reduction):
    # the dense forms write their gradients by hand (one Function from the rows to the loss);
    # "none" differentiates each anchor's sum, "mean" their total
    g = torch.Generator().manual_seed(1)
    x = torch.randn(10, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 3, (10,), generator=g)
    kwargs = dict(metric=metric, smoothing=smoothing, reduction=reduction, margin=0.5)
    assert torch.autograd.gradcheck(lambda z: LOSSES[name](z, y, **kwargs), (x,), atol=1e-6)
