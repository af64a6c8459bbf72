"""triplet_margin_loss / TripletMarginLoss: definition, hand-derived backward, properties, bad input."""

import math

import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd import gradcheck, gradgradcheck

import tripletlab
from references import naive_triplet_loss
from tripletlab.functional import triplet_margin_loss

METRICS = ["sqeuclidean", "euclidean", "cosine"]
REDUCTIONS = ["mean", "mean_active", "sum", "none"]
SMOOTHINGS = [None, 0.5]


def random_triplets(n=6, d=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(n, d, generator=g, dtype=dtype) for _ in range(3))


def leaves(*tensors):
    return tuple(t.detach().clone().requires_grad_(True) for t in tensors)


# ----------------------------------------------------------------- gradients (seed 000)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("smoothing", SMOOTHINGS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_float64(metric, smoothing, reduction):
    a, p, n = leaves(*random_triplets(seed=1))

    def loss(a, p, n):
        return triplet_margin_loss(
            a, p, n, margin=0.5, metric=metric, smoothing=smoothing, reduction=reduction
        )

    assert gradcheck(loss, (a, p, n), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("metric", METRICS)
def test_gradgradcheck_of_the_smoothed_loss(metric):
    a, p, n = leaves(*random_triplets(n=3, seed=2))

    def loss(a, p, n):
        return triplet_margin_loss(a, p, n, margin=0.5, metric=metric, smoothing=0.5)

    assert gradgradcheck(loss, (a, p, n), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("smoothing", SMOOTHINGS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_custom_backward_matches_autograd_of_the_naive_reference(metric, smoothing, reduction):
    a, p, n = random_triplets(n=16, d=5, seed=3)
    kwargs = dict(margin=0.8, metric=metric, smoothing=smoothing, reduction=reduction)
    ours = leaves(a, p, n)
    theirs = leaves(a, p, n)
    got = triplet_margin_loss(*ours, **kwargs)
    want = naive_triplet_loss(*theirs, **kwargs)
    torch.testing.assert_close(got, want)
    got.sum().backward()
    want.sum().backward()
    for x, y in zip(ours, theirs, strict=True):
        torch.testing.assert_close(x.grad, y.grad)
    if smoothing is None:
        values = naive_triplet_loss(a, p, n, margin=0.8, metric=metric, reduction="none")
        assert 0 < int((values > 0).sum()) < len(values), "test data must mix active/inactive"


def test_backward_is_the_custom_function():
    a, p, n = leaves(*random_triplets())
    out = triplet_margin_loss(a, p, n, reduction="none")
    assert "TripletMarginFunction" in out.grad_fn.name()


def test_seed_000_gradients_of_one_active_triplet():
    a = torch.tensor([[0.0, 0.0, 1.0]], requires_grad=True)
    p = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    n = torch.tensor([[1.1, 2.0, 3.3]], requires_grad=True)
    loss = triplet_margin_loss(a, p, n, margin=0.2, reduction="sum")
    # ‖a − p‖² = 9, ‖a − n‖² = 1.21 + 4 + 5.29 = 10.5: 9 − 10.5 + 0.2 < 0 → inactive.
    assert loss.item() == 0
    loss.backward()
    assert all(bool((t.grad == 0).all()) for t in (a, p, n))
    a.grad = p.grad = n.grad = None
    loss = triplet_margin_loss(a, p, n, margin=2.0, reduction="sum")
    torch.testing.assert_close(loss, torch.tensor(0.5))
    loss.backward()
    with torch.no_grad():
        torch.testing.assert_close(a.grad, 2 * (n - p))
        torch.testing.assert_close(p.grad, -2 * (a - p))
        torch.testing.assert_close(n.grad, 2 * (a - n))


def test_matches_torch_for_euclidean_without_eps():
    a, p, n = random_triplets(n=32, d=8, seed=4)
    for reduction in ("mean", "sum", "none"):
        got = triplet_margin_loss(a, p, n, margin=1.0, metric="euclidean", reduction=reduction)
        want = TF.triplet_margin_loss(a, p, n, margin=1.0, eps=0.0, reduction=reduction)
        torch.testing.assert_close(got, want)


def test_matches_torch_with_squared_distance_function():
    a, p, n = random_triplets(n=32, d=8, seed=5)
    torch_loss = torch.nn.TripletMarginWithDistanceLoss(
        distance_function=lambda x, y: ((x - y) ** 2).sum(1), margin=0.2
    )
    torch.testing.assert_close(triplet_margin_loss(a, p, n, margin=0.2), torch_loss(a, p, n))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_gradient_is_finite_at_distance_zero(metric):
    a = torch.randn(4, 3, dtype=torch.float64)
    n = torch.randn(4, 3, dtype=torch.float64)
    ours = leaves(a, a.clone(), n)  # a = p: d_ap = 0
    triplet_margin_loss(*ours, margin=5.0, metric=metric).backward()
    assert all(bool(torch.isfinite(t.grad).all()) for t in ours)
    if metric == "euclidean":
        naive = leaves(a, a.clone(), n)
        naive_triplet_loss(*naive, margin=5.0, metric=metric).backward()
        assert bool(torch.isnan(naive[0].grad).any()), "the naive sqrt really is NaN at 0"


def test_zero_vector_with_cosine_gives_finite_gradients():
    a, p, n = leaves(torch.zeros(2, 3), torch.randn(2, 3), torch.randn(2, 3))
    loss = triplet_margin_loss(a, p, n, margin=1.5, metric="cosine")
    loss.backward()
    assert torch.isfinite(loss)
    assert all(bool(torch.isfinite(t.grad).all()) for t in (a, p, n))


# ----------------------------------------------------------------- reductions, dtypes


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_empty_batch_gives_zero_and_zero_gradient(reduction):
    a, p, n = leaves(*(torch.zeros(0, 4) for _ in range(3)))
    loss = triplet_margin_loss(a, p, n, reduction=reduction)
    assert loss.shape == ((0,) if reduction == "none" else ())
    assert not torch.isnan(loss).any() and float(loss.detach().sum()) == 0.0
    loss.sum().backward()
    assert all(t.grad is not None and t.grad.shape == (0, 4) for t in (a, p, n))


def test_reductions_relate_as_defined():
    a, p, n = random_triplets(n=20, seed=6)
    values = triplet_margin_loss(a, p, n, margin=0.5, reduction="none")
    active = int((values > 0).sum())
    assert 0 < active < 20
    torch.testing.assert_close(triplet_margin_loss(a, p, n, margin=0.5), values.mean())
    torch.testing.assert_close(
        triplet_margin_loss(a, p, n, margin=0.5, reduction="sum"), values.sum()
    )
    torch.testing.assert_close(
        triplet_margin_loss(a, p, n, margin=0.5, reduction="mean_active"), values.sum() / active
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_computed_in_float32_and_returned_in_input_dtype(dtype):
    a, p, n = random_triplets(n=64, d=16, seed=7, dtype=torch.float32)
    low = leaves(a.to(dtype), p.to(dtype), n.to(dtype))
    loss = triplet_margin_loss(*low, margin=1.0)
    assert loss.dtype == dtype
    # The reference sees the same rounded inputs, in float32.
    want = triplet_margin_loss(*(t.detach().float() for t in low), margin=1.0)
    torch.testing.assert_close(loss.float(), want, rtol=1e-2, atol=1e-2)
    loss.backward()
    assert all(t.grad.dtype == dtype and bool(torch.isfinite(t.grad).all()) for t in low)


def test_smoothing_tends_to_the_hinge():
    a, p, n = random_triplets(n=50, seed=8)
    hinge = triplet_margin_loss(a, p, n, reduction="none")
    for mu in (1.0, 0.1, 0.01, 1e-4):
        smooth = triplet_margin_loss(a, p, n, smoothing=mu, reduction="none")
        gap = smooth - hinge
        assert bool((gap >= 0).all()) and float(gap.max()) <= mu * math.log(2) + 1e-12
    torch.testing.assert_close(
        triplet_margin_loss(a, p, n, smoothing=0), triplet_margin_loss(a, p, n, smoothing=None)
    )


def test_soft_margin_is_softplus_of_the_difference():
    a, p, n = random_triplets(n=10, seed=9)
    got = triplet_margin_loss(
        a, p, n, margin=0.0, metric="euclidean", smoothing=1.0, reduction="none"
    )
    d_ap, d_an = (a - p).norm(dim=1), (a - n).norm(dim=1)
    torch.testing.assert_close(got, TF.softplus(d_ap - d_an))


# ----------------------------------------------------------------- properties (hypothesis)

SCALES = [1e-6, 1e-3, 1.0, 1e3, 1e6]


@st.composite
def triplet_batches(draw):
    n = draw(st.integers(0, 6))
    d = draw(st.integers(1, 5))
    scale = draw(st.sampled_from(SCALES))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    a, p, neg = (torch.randn(n, d, generator=g, dtype=torch.float64) * scale for _ in range(3))
    if n and draw(st.booleans()):  # duplicates: p = a in some rows, n = p in others
        rows = torch.rand(n, generator=g) < 0.5
        p = torch.where(rows[:, None], a, p)
        neg = torch.where(~rows[:, None], p, neg)
    return a.to(dtype), p.to(dtype), neg.to(dtype), scale


@settings(max_examples=150, deadline=None)
@given(
    batch=triplet_batches(),
    metric=st.sampled_from(METRICS),
    smoothing=st.sampled_from([None, 0.5]),
    reduction=st.sampled_from(REDUCTIONS),
    margin_factor=st.sampled_from([0.0, 0.1, 1.0]),
)
def test_properties(batch, metric, smoothing, reduction, margin_factor):
    a, p, n, scale = batch
    unit = 1.0 if metric == "cosine" else scale**2 if metric == "sqeuclidean" else scale
    margin = margin_factor * unit
    mu = None if smoothing is None else smoothing * unit
    kwargs = dict(margin=margin, metric=metric, smoothing=mu)
    inputs = leaves(a, p, n)
    values = triplet_margin_loss(*inputs, **kwargs, reduction="none")
    # ≥ 0, no NaN, gradients finite
    assert bool((values >= 0).all()) and bool(torch.isfinite(values).all())
    reduced = triplet_margin_loss(*inputs, **kwargs, reduction=reduction)
    reduced.sum().backward()
    assert all(bool(torch.isfinite(t.grad).all()) for t in inputs)
    # agreement with the float64 reference (cancellation in D(a,p) − D(a,n) limits float32)
    want = naive_triplet_loss(*(t.double() for t in (a, p, n)), **kwargs, reduction="none").detach()
    if metric == "cosine":
        # the reference is undefined (0/0) only for zero vectors, which randn never gives
        tol = 1e-5 if a.dtype == torch.float32 else 1e-10
    else:
        tol = (2e-5 if a.dtype == torch.float32 else 1e-11) * unit * max(1, a.shape[1])
    assert torch.allclose(
        values.double(), want, rtol=1e-4 if a.dtype == torch.float32 else 1e-9, atol=tol
    )
    # permutation invariance
    perm = torch.randperm(len(a))
    permuted = triplet_margin_loss(a[perm], p[perm], n[perm], **kwargs, reduction="none")
    torch.testing.assert_close(permuted, values.detach()[perm])
    if reduction != "none":
        again = triplet_margin_loss(a[perm], p[perm], n[perm], **kwargs, reduction=reduction)
        torch.testing.assert_close(
            again, reduced.detach(), rtol=1e-5, atol=1e-6 * float(reduced.detach().abs()) + 1e-30
        )


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 6),
    d=st.integers(1, 5),
    scale=st.sampled_from(SCALES),
    metric=st.sampled_from(["sqeuclidean", "euclidean"]),
    reduction=st.sampled_from(REDUCTIONS),
    seed=st.integers(0, 2**16),
)
def test_nothing_active_gives_exact_zero_loss_and_gradient(n, d, scale, metric, reduction, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g) * scale
    p = a + 0.01 * scale * torch.randn(n, d, generator=g)
    neg = a + 10 * scale * torch.ones(n, d)  # far beyond p + margin
    unit = scale**2 if metric == "sqeuclidean" else scale
    inputs = leaves(a, p, neg)
    loss = triplet_margin_loss(*inputs, margin=unit, metric=metric, reduction=reduction)
    assert float(loss.detach().abs().sum()) == 0.0
    loss.sum().backward()
    assert all(bool((t.grad == 0).all()) for t in inputs)


# ----------------------------------------------------------------- bad input

GOOD = random_triplets(n=3, d=2, dtype=torch.float32)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((GOOD[0], GOOD[1][:2], GOOD[2]), {}, ValueError, "positive"),
        ((GOOD[0], GOOD[1], GOOD[2][:, :1]), {}, ValueError, "negative"),
        ((GOOD[0][0], GOOD[1][0], GOOD[2][0]), {}, ValueError, "anchor must have 2 dimensions"),
        ((GOOD[0].long(), GOOD[1], GOOD[2]), {}, TypeError, "anchor must be a floating"),
        ((GOOD[0], [[1.0, 2.0]] * 3, GOOD[2]), {}, TypeError, "positive must be a torch.Tensor"),
        ((GOOD[0], GOOD[1], GOOD[2] * float("nan")), {}, ValueError, "negative contains NaN"),
        ((GOOD[0] * float("inf"), GOOD[1], GOOD[2]), {}, ValueError, "anchor contains NaN or Inf"),
        (GOOD, {"metric": "manhattan"}, ValueError, "metric must be one of"),
        (GOOD, {"reduction": "avg"}, ValueError, "reduction must be one of"),
        (GOOD, {"margin": -0.1}, ValueError, "margin must be finite and >= 0; got -0.1"),
        (GOOD, {"margin": float("nan")}, ValueError, "margin"),
        (GOOD, {"margin": "0.2"}, TypeError, "margin must be a real number"),
        (GOOD, {"smoothing": -1.0}, ValueError, "smoothing"),
    ],
)
def test_bad_input_names_the_argument(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        triplet_margin_loss(*args, **kwargs)


def test_module_validates_eagerly_and_matches_functional():
    with pytest.raises(ValueError, match="margin"):
        tripletlab.TripletMarginLoss(margin=-1)
    with pytest.raises(
        ValueError, match="metric must be one of 'sqeuclidean', 'euclidean', 'cosine'"
    ):
        tripletlab.TripletMarginLoss(metric="l1")
    with pytest.raises(ValueError, match="reduction"):
        tripletlab.TripletMarginLoss(reduction="batchmean")
    loss = tripletlab.TripletMarginLoss(
        margin=0.3, metric="euclidean", smoothing=0.1, reduction="sum"
    )
    assert "margin=0.3" in repr(loss) and "euclidean" in repr(loss)
    a, p, n = random_triplets(seed=10)
    torch.testing.assert_close(
        loss(a, p, n),
        triplet_margin_loss(
            a, p, n, margin=0.3, metric="euclidean", smoothing=0.1, reduction="sum"
        ),
    )
