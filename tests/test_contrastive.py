"""contrastive_loss / batch_contrastive_loss and their modules: definitions, gradients, properties."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd import gradcheck

import tripletlab
from references import naive_batch_contrastive_loss, naive_contrastive_loss
from tripletlab.functional import batch_contrastive_loss, contrastive_loss
from tripletlab.functional._ties import error_scale

METRICS = ["sqeuclidean", "euclidean", "cosine"]
FORMS = ["hadsell", "squared"]
REDUCTIONS = ["mean", "mean_active", "sum", "none"]


def leaves(*tensors):
    return tuple(t.detach().clone().requires_grad_(True) for t in tensors)


def random_pairs(n=12, d=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x1 = torch.randn(n, d, generator=g, dtype=dtype)
    x2 = x1 + 0.6 * torch.randn(n, d, generator=g, dtype=dtype)
    same = torch.arange(n) % 2
    return x1, x2, same


def test_seed_formulas_by_hand():
    x1 = torch.zeros(4, 2)
    x2 = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.3, 0.4], [3.0, 4.0]])  # d = 5, .5, .5, 5
    same = torch.tensor([1, 0, 1, 0])
    hadsell = contrastive_loss(x1, x2, same, margin=1.0, reduction="none")
    # positives: d² (25, 0.25); negatives: max(0, 1 − d)² (0.25, 0)
    torch.testing.assert_close(hadsell, torch.tensor([25.0, 0.25, 0.25, 0.0]))
    squared = contrastive_loss(x1, x2, same, margin=1.0, form="squared", reduction="none")
    # negatives: max(0, ε − d²) = (0.75, 0)
    torch.testing.assert_close(squared, torch.tensor([25.0, 0.75, 0.25, 0.0]))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_matches_naive_reference_values_and_gradients(form, metric, reduction):
    x1, x2, same = random_pairs(seed=1)
    kwargs = dict(margin=0.9, form=form, metric=metric, reduction=reduction)
    ours, theirs = leaves(x1, x2), leaves(x1, x2)
    got = contrastive_loss(*ours, same, **kwargs)
    want = naive_contrastive_loss(*theirs, same, **kwargs)
    torch.testing.assert_close(got, want)
    got.sum().backward()
    want.sum().backward()
    for x, y in zip(ours, theirs, strict=True):
        torch.testing.assert_close(x.grad, y.grad)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_gradcheck(form, metric):
    x1, x2, same = random_pairs(n=6, seed=2)
    x1, x2 = leaves(x1, x2)
    assert gradcheck(
        lambda a, b: contrastive_loss(a, b, same, margin=0.9, form=form, metric=metric), (x1, x2)
    )


def test_identical_positive_points_have_finite_zero_gradient():
    x = torch.randn(3, 4, dtype=torch.float64)
    x1, x2 = leaves(x, x.clone())
    loss = contrastive_loss(x1, x2, torch.ones(3, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0
    assert bool((x1.grad == 0).all()) and bool((x2.grad == 0).all())
    # a negative pair at distance 0 (hadsell, euclidean): loss m², gradient 0 by convention
    y1, y2 = leaves(x, x.clone())
    neg = contrastive_loss(y1, y2, torch.zeros(3, dtype=torch.long), margin=2.0)
    neg.backward()
    torch.testing.assert_close(neg, torch.tensor(4.0, dtype=torch.float64))
    assert bool(torch.isfinite(y1.grad).all())


def test_same_accepts_bool_int_and_01_float():
    x1, x2, same = random_pairs(seed=3)
    want = contrastive_loss(x1, x2, same)
    torch.testing.assert_close(contrastive_loss(x1, x2, same.bool()), want)
    torch.testing.assert_close(contrastive_loss(x1, x2, same.double()), want)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_returns_input_dtype(dtype):
    x1, x2, same = random_pairs(n=32, d=8, seed=4, dtype=torch.float32)
    a, b = leaves(x1.to(dtype), x2.to(dtype))
    loss = contrastive_loss(a, b, same)
    assert loss.dtype == dtype
    torch.testing.assert_close(
        loss.float(),
        contrastive_loss(a.detach().float(), b.detach().float(), same),
        rtol=1e-2,
        atol=1e-2,
    )
    loss.backward()
    assert a.grad.dtype == dtype


# ----------------------------------------------------------------- batch form


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_batch_form_matches_all_pairs_brute_force(form, metric, reduction):
    g = torch.Generator().manual_seed(5)
    emb = torch.randn(10, 3, generator=g, dtype=torch.float64) * 0.5
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])
    kwargs = dict(margin=1.0, form=form, metric=metric, reduction=reduction)
    ours, theirs = leaves(emb), leaves(emb)
    got = batch_contrastive_loss(*ours, labels, **kwargs)
    want = naive_batch_contrastive_loss(*theirs, labels, **kwargs)
    torch.testing.assert_close(got, want)
    got.sum().backward()
    want.sum().backward()
    torch.testing.assert_close(ours[0].grad, theirs[0].grad)


def test_batch_none_sums_to_sum():
    emb = torch.randn(9, 4, dtype=torch.float64)
    labels = torch.arange(9) % 3
    per_anchor = batch_contrastive_loss(emb, labels, reduction="none")
    assert per_anchor.shape == (9,)
    torch.testing.assert_close(
        per_anchor.sum(), batch_contrastive_loss(emb, labels, reduction="sum")
    )


def test_batch_stats():
    emb = torch.tensor([[0.0, 0.0], [0.0, 0.5], [3.0, 4.0], [3.0, 4.2]])
    labels = torch.tensor([0, 0, 1, 1])
    loss, stats = batch_contrastive_loss(emb, labels, margin=1.0, return_stats=True)
    # 6 pairs: positives (0,1) d=.5 and (2,3) d=.2 are active; the 4 negatives are far: inactive
    assert int(stats["positive_pairs"]) == 2 and int(stats["negative_pairs"]) == 4
    assert int(stats["active_pairs"]) == 2
    assert all(v.dim() == 0 for v in stats.values())
    torch.testing.assert_close(stats["active_fraction"], torch.tensor(2 / 6))
    torch.testing.assert_close(loss, torch.tensor((0.25 + 0.04) / 6))


@pytest.mark.parametrize("b", [0, 1])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_batch_with_fewer_than_two_samples_is_zero(b, reduction):
    emb = torch.randn(b, 3, requires_grad=True)
    loss, stats = batch_contrastive_loss(
        emb, torch.zeros(b, dtype=torch.long), reduction=reduction, return_stats=True
    )
    assert float(loss.detach().abs().sum()) == 0.0 and not torch.isnan(loss).any()
    assert float(stats["active_fraction"]) == 0.0
    loss.sum().backward()
    assert emb.grad is not None and bool((emb.grad == 0).all())


# ----------------------------------------------------------------- properties (hypothesis)


@settings(max_examples=100, deadline=None)
@given(
    b=st.integers(0, 7),
    d=st.integers(1, 4),
    scale=st.sampled_from([1e-6, 1e-3, 1.0, 1e3, 1e6]),
    form=st.sampled_from(FORMS),
    metric=st.sampled_from(METRICS),
    reduction=st.sampled_from(REDUCTIONS),
    duplicates=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**16),
)
def test_batch_properties(b, d, scale, form, metric, reduction, duplicates, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(b, d, generator=g, dtype=torch.float64) * scale
    if duplicates and b > 1:
        emb[1] = emb[0]
    labels = torch.randint(0, 3, (b,), generator=g)
    unit = 1.0 if metric == "cosine" else scale**2 if metric == "sqeuclidean" else scale
    margin = unit
    x = leaves(emb.to(dtype))[0]
    loss = batch_contrastive_loss(
        x, labels, margin=margin, form=form, metric=metric, reduction=reduction
    )
    assert bool(torch.isfinite(loss).all()) and bool((loss >= 0).all())
    loss.sum().backward()
    assert bool(torch.isfinite(x.grad).all())
    # permutation invariance of the batch
    perm = torch.randperm(b, generator=g)
    again = batch_contrastive_loss(
        x.detach()[perm], labels[perm], margin=margin, form=form, metric=metric, reduction=reduction
    )
    want = loss.detach()[perm] if reduction == "none" else loss.detach()
    scale_of_loss = float(want.abs().max()) if want.numel() else 0.0
    # the decisions (active pairs) are exact and order-free; the values differ by the GEMM's
    # rounding of the distances that decide nothing: |ΔD| ≤ γ·(s_a + s_n) with
    # γ = error_scale(d) ≈ (8d + 20)·u (tripletlab.functional._ties). The loss is quadratic in
    # D with s_a + s_n a few loss units, so 16γ of the loss's scale; measured worst over 3000
    # random draws of this test's space: 0.76γ (float32 and float64 alike)
    tol = 16 * error_scale(d, dtype)
    torch.testing.assert_close(again, want, rtol=tol, atol=tol * scale_of_loss + 1e-30)
    # agreement with the brute-force reference in float64, relative to the loss's scale:
    # d² ~ unit² for positives, [m − d]₊² ~ unit² or [m − d²]₊ ~ max(unit, unit²) for negatives
    ref = naive_batch_contrastive_loss(
        emb.to(dtype).double(), labels, margin=margin, form=form, metric=metric, reduction=reduction
    )
    loss_unit = max(unit, unit**2) * d
    rel = 1e-3 if dtype == torch.float32 else 1e-7
    assert torch.allclose(loss.detach().double(), ref, rtol=rel, atol=rel * loss_unit)


@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(0, 7),
    d=st.integers(1, 4),
    scale=st.sampled_from([1e-6, 1e-3, 1.0, 1e3, 1e6]),
    form=st.sampled_from(FORMS),
    metric=st.sampled_from(["sqeuclidean", "euclidean"]),
    reduction=st.sampled_from(REDUCTIONS),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_nothing_active_gives_exact_zero_loss_and_gradient(
    b, d, scale, form, metric, reduction, dtype
):
    # every sample its own class, all at least 10·scale apart: no pair is within the margin
    emb = torch.zeros(b, d, dtype=dtype)
    emb[:, 0] = 10 * scale * torch.arange(b, dtype=dtype)
    emb.requires_grad_(True)
    unit = scale**2 if metric == "sqeuclidean" else scale
    margin = unit if form == "hadsell" else unit**2  # "squared" compares the margin with d²
    loss = batch_contrastive_loss(
        emb, torch.arange(b), margin=margin, form=form, metric=metric, reduction=reduction
    )
    assert float(loss.detach().abs().sum()) == 0.0
    loss.sum().backward()
    assert bool((emb.grad == 0).all())


# ----------------------------------------------------------------- bad input and modules


X1, X2, SAME = random_pairs(n=3, d=2, dtype=torch.float32)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((X1, X2[:2], SAME), {}, ValueError, "x2 must have the shape of x1"),
        ((X1, X2, SAME[:2]), {}, ValueError, r"same must have shape \(3,\)"),
        ((X1, X2, torch.tensor([0, 2, 1])), {}, ValueError, "same must contain only 0/1"),
        ((X1.int(), X2, SAME), {}, TypeError, "x1 must be a floating"),
        ((X1, X2 * float("nan"), SAME), {}, ValueError, "x2 contains NaN"),
        (
            (X1, X2, SAME),
            {"form": "chopra"},
            ValueError,
            "form must be one of 'hadsell', 'squared'",
        ),
        ((X1, X2, SAME), {"metric": "l1"}, ValueError, "metric must be one of"),
        ((X1, X2, SAME), {"reduction": "max"}, ValueError, "reduction must be one of"),
        ((X1, X2, SAME), {"margin": -1.0}, ValueError, "margin must be finite and >= 0"),
    ],
)
def test_bad_input_names_the_argument(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        contrastive_loss(*args, **kwargs)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (
            (torch.randn(4, 2), torch.tensor([0.0, 1.0, 0.0, 1.0])),
            TypeError,
            "labels must be an integer",
        ),
        (
            (torch.randn(4, 2), torch.tensor([0, 1, 0])),
            ValueError,
            r"labels must have shape \(4,\)",
        ),
        (
            (torch.randn(4), torch.tensor([0, 1, 0, 1])),
            ValueError,
            "embeddings must have 2 dimensions",
        ),
        (
            (torch.full((4, 2), float("inf")), torch.tensor([0, 1, 0, 1])),
            ValueError,
            "embeddings contains NaN or Inf",
        ),
    ],
)
def test_batch_bad_input(args, error, match):
    with pytest.raises(error, match=match):
        batch_contrastive_loss(*args)


def test_modules():
    with pytest.raises(ValueError, match="form"):
        tripletlab.ContrastiveLoss(form="x")
    with pytest.raises(ValueError, match="margin"):
        tripletlab.BatchContrastiveLoss(margin=-2)
    x1, x2, same = random_pairs(seed=6)
    module = tripletlab.ContrastiveLoss(margin=0.5, form="squared", reduction="sum")
    torch.testing.assert_close(
        module(x1, x2, same),
        contrastive_loss(x1, x2, same, margin=0.5, form="squared", reduction="sum"),
    )
    emb, labels = torch.randn(8, 3), torch.arange(8) % 4
    batch = tripletlab.BatchContrastiveLoss(margin=0.5)
    loss, stats = batch(emb, labels, return_stats=True)
    torch.testing.assert_close(loss, batch_contrastive_loss(emb, labels, margin=0.5))
    assert int(stats.positive_pairs) == 4 and stats.as_dict()["negative_pairs"] == 24.0
    torch.testing.assert_close(batch(emb, labels), loss)  # no stats unless asked for
    # the constructor argument of before keeps working, with a deprecation warning
    with pytest.warns(DeprecationWarning, match="return_stats"):
        old = tripletlab.BatchContrastiveLoss(margin=0.5, return_stats=True)
    old_loss, old_stats = old(emb, labels)
    torch.testing.assert_close(old_loss, loss)
    assert int(old_stats["positive_pairs"]) == 4
    assert "hadsell" in repr(batch)
