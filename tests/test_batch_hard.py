import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_references import batch_hard_reference, random_batch
from tripletlab import BatchHardTripletLoss
from tripletlab.functional import batch_hard_triplet_loss

# (the general path of batch-hard — bucketed, refined — is covered by test_batch_ties.py and
# test_dense_small.py on both paths; this module tests the form users get)

METRICS = ["sqeuclidean", "euclidean", "cosine"]
REDUCTIONS = ["mean", "mean_active", "sum", "none"]


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 10),
    n_classes=st.integers(1, 4),
    integer=st.booleans(),
    metric=st.sampled_from(METRICS),
    margin=st.sampled_from([0.0, 0.2, 1.0, 2.0]),
    smoothing=st.sampled_from([None, 0.5, 1.0]),
    reduction=st.sampled_from(REDUCTIONS),
)
def test_equals_brute_force(seed, n, n_classes, integer, metric, margin, smoothing, reduction):
    x, y = random_batch(seed, n, n_classes, integer=integer)
    kwargs = dict(margin=margin, metric=metric, smoothing=smoothing, reduction=reduction)
    got = batch_hard_triplet_loss(x, y, **kwargs)
    torch.testing.assert_close(got, batch_hard_reference(x, y, **kwargs), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("smoothing", [None, 1.0])
def test_gradient_matches_autograd_of_reference(metric, smoothing):
    x, y = random_batch(3, 14, 3)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    kwargs = dict(margin=0.5, metric=metric, smoothing=smoothing)
    batch_hard_triplet_loss(a, y, **kwargs).backward()
    batch_hard_reference(b, y, **kwargs).backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_gradcheck():
    x, y = random_batch(5, 9, 3)
    x.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda e: batch_hard_triplet_loss(e, y, margin=1.0, reduction="none"), (x,)
    )


def test_soft_margin_is_softplus_of_difference():
    x, y = random_batch(6, 10, 2)
    got = batch_hard_triplet_loss(x, y, margin=0.0, smoothing=1.0, metric="euclidean")
    d = torch.cdist(x, x)
    same = y[:, None] == y[None, :]
    d_ap = torch.where(same & ~torch.eye(10, dtype=torch.bool), d, -1.0).max(1).values
    d_an = torch.where(~same, d, float("inf")).min(1).values
    valid = (d_ap >= 0) & torch.isfinite(d_an)
    want = torch.nn.functional.softplus(d_ap - d_an)[valid].mean()
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("labels", [torch.arange(5), torch.zeros(5, dtype=torch.long)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_no_valid_triplet_gives_zero_and_zero_gradient(labels, reduction):
    x = torch.randn(5, 3, requires_grad=True)
    loss = batch_hard_triplet_loss(x, labels, reduction=reduction, smoothing=1.0)
    assert torch.equal(loss, torch.zeros_like(loss))
    loss.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_identical_embeddings_and_float16():
    x = torch.ones(6, 3, dtype=torch.float16, requires_grad=True)
    loss = batch_hard_triplet_loss(x, torch.tensor([0, 0, 1, 1, 2, 2]), metric="euclidean")
    loss.backward()
    assert loss.dtype == torch.float32 and float(loss.detach()) == pytest.approx(0.2)
    assert torch.isfinite(x.grad).all()


def test_reference_set_and_stats():
    x, y = random_batch(7, 6, 3)
    r, ry = random_batch(8, 9, 4)
    got, stats = batch_hard_triplet_loss(
        x, y, ref_embeddings=r, ref_labels=ry, margin=1.0, return_stats=True
    )
    want = batch_hard_reference(x, y, ref_embeddings=r, ref_labels=ry, margin=1.0)
    torch.testing.assert_close(got, want)
    valid_anchors = sum(1 for a in range(6) if (ry == y[a]).any() and (ry != y[a]).any())
    assert stats.active_fraction.item() * valid_anchors == pytest.approx(stats.num_active.item())


def test_module():
    with pytest.raises(ValueError, match="smoothing"):
        BatchHardTripletLoss(smoothing=-1.0)
    x, y = random_batch(4, 10, 3)
    torch.testing.assert_close(
        BatchHardTripletLoss(margin=0.3)(x, y), batch_hard_triplet_loss(x, y, margin=0.3)
    )
