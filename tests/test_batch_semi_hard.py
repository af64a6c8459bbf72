import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_references import batch_semi_hard_reference, random_batch
from tripletlab import BatchSemiHardTripletLoss
from tripletlab.functional import batch_semi_hard_triplet_loss

# every test runs on the small-batch forms and on the general ones (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("loss_path")

METRICS = ["sqeuclidean", "euclidean", "cosine"]
REDUCTIONS = ["mean", "mean_active", "sum", "none"]
FALLBACKS = ["hardest", "easiest", "skip"]


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 10),
    n_classes=st.integers(1, 4),
    integer=st.booleans(),
    metric=st.sampled_from(METRICS),
    margin=st.sampled_from([0.0, 0.2, 1.0, 2.0]),
    smoothing=st.sampled_from([None, 0.5]),
    fallback=st.sampled_from(FALLBACKS),
    reduction=st.sampled_from(REDUCTIONS),
    budget=st.sampled_from([1, 2**28]),
)
def test_equals_brute_force(
    seed, n, n_classes, integer, metric, margin, smoothing, fallback, reduction, budget
):
    # integer embeddings make d_an == d_ap ties exact: such a negative is not semi-hard
    x, y = random_batch(seed, n, n_classes, integer=integer)
    kwargs = dict(
        margin=margin, metric=metric, smoothing=smoothing, fallback=fallback, reduction=reduction
    )
    got = batch_semi_hard_triplet_loss(x, y, memory_budget=budget, **kwargs)
    want = batch_semi_hard_reference(x, y, **kwargs)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("fallback", FALLBACKS)
def test_gradient_matches_autograd_of_reference(metric, fallback):
    x, y = random_batch(3, 14, 3)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    kwargs = dict(margin=0.5, metric=metric, fallback=fallback, smoothing=0.3)
    batch_semi_hard_triplet_loss(a, y, **kwargs).backward()
    batch_semi_hard_reference(b, y, **kwargs).backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_gradcheck():
    x, y = random_batch(5, 9, 3)
    x.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda e: batch_semi_hard_triplet_loss(e, y, margin=1.0, reduction="none"), (x,)
    )


def test_selects_the_closest_farther_negative():
    # anchor 0 at 0, positive at 1 (d_ap = 1); negatives at 0.5 (closer), 2 and 3 (farther)
    x = torch.tensor([[0.0], [1.0], [0.5], [2.0], [3.0]])
    y = torch.tensor([0, 0, 1, 1, 1])
    per_anchor = batch_semi_hard_triplet_loss(x, y, margin=5.0, reduction="none")
    assert float(per_anchor[0]) == pytest.approx(1.0 - 4.0 + 5.0)


@pytest.mark.parametrize("labels", [torch.arange(5), torch.zeros(5, dtype=torch.long)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("fallback", FALLBACKS)
def test_no_valid_triplet_gives_zero_and_zero_gradient(labels, reduction, fallback):
    x = torch.randn(5, 3, requires_grad=True)
    loss = batch_semi_hard_triplet_loss(x, labels, reduction=reduction, fallback=fallback)
    assert torch.equal(loss, torch.zeros_like(loss))
    loss.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_identical_embeddings_and_float16():
    x = torch.ones(6, 3, dtype=torch.float16, requires_grad=True)
    loss = batch_semi_hard_triplet_loss(x, torch.tensor([0, 0, 1, 1, 2, 2]))
    loss.backward()
    assert loss.dtype == torch.float32 and float(loss.detach()) == pytest.approx(0.2)
    assert torch.isfinite(x.grad).all()
    skipped = batch_semi_hard_triplet_loss(x, torch.tensor([0, 0, 1, 1, 2, 2]), fallback="skip")
    assert float(skipped.detach()) == 0.0


def test_reference_set():
    x, y = random_batch(7, 6, 3)
    r, ry = random_batch(8, 9, 4)
    got = batch_semi_hard_triplet_loss(x, y, ref_embeddings=r, ref_labels=ry, margin=1.0)
    want = batch_semi_hard_reference(x, y, ref_embeddings=r, ref_labels=ry, margin=1.0)
    torch.testing.assert_close(got, want)


def test_module():
    with pytest.raises(ValueError, match="fallback"):
        BatchSemiHardTripletLoss(fallback="random")
    x, y = random_batch(4, 10, 3)
    torch.testing.assert_close(
        BatchSemiHardTripletLoss(fallback="easiest")(x, y),
        batch_semi_hard_triplet_loss(x, y, fallback="easiest"),
    )


def test_binary_search_path_equals_comparison_path(monkeypatch):
    from tripletlab.functional import batch_semi_hard as module

    x, y = random_batch(11, 30, 3)
    by_comparison = batch_semi_hard_triplet_loss(x, y, margin=1.0, reduction="none")
    monkeypatch.setattr(module, "_COMPARE_MAX_K", 0)
    by_search = batch_semi_hard_triplet_loss(x, y, margin=1.0, reduction="none")
    torch.testing.assert_close(by_search, by_comparison)
    torch.testing.assert_close(
        by_search, batch_semi_hard_reference(x, y, margin=1.0, reduction="none")
    )


@pytest.mark.parametrize("dense_max", [0, 2**20])
def test_bucketing_and_dense_selection_agree_with_the_reference(monkeypatch, dense_max):
    # small batches take the dense (B, K, M) minimum; 0 forces the bucketing path
    from tripletlab.functional import batch_semi_hard as module

    monkeypatch.setattr(module, "_DENSE_MAX_ELEMENTS", dense_max)
    for seed, integer in ((31, False), (32, True), (33, True)):
        x, y = random_batch(seed, 24, 4, integer=integer)
        for fallback in ("hardest", "easiest", "skip"):
            kwargs = dict(margin=1.0, fallback=fallback, reduction="sum")
            got = batch_semi_hard_triplet_loss(x.float(), y, **kwargs)
            want = batch_semi_hard_reference(x.float(), y, **kwargs)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
