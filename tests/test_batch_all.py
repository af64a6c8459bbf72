import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_references import batch_all_reference, random_batch
from tripletlab import BatchAllTripletLoss
from tripletlab.functional import batch_all_triplet_loss
from tripletlab.functional._batch_input import prepare_batch
from tripletlab.functional.batch_all import _BatchAllHinge, _BatchAllSmooth

# every test runs on the small-batch forms and on the general ones (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("loss_path")

METRICS = ["sqeuclidean", "euclidean", "cosine"]
REDUCTIONS = ["mean", "mean_active", "sum", "none"]


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 9),
    n_classes=st.integers(1, 4),
    integer=st.booleans(),
    metric=st.sampled_from(METRICS),
    margin=st.sampled_from([0.0, 0.2, 1.0, 2.0]),
    smoothing=st.sampled_from([None, 0.0, 0.5]),
    reduction=st.sampled_from(REDUCTIONS),
    budget=st.sampled_from([1, 2**28]),
)
def test_equals_brute_force(
    seed, n, n_classes, integer, metric, margin, smoothing, reduction, budget
):
    # integer embeddings with margins 1 and 2 produce exact ties d_an = d_ap + m;
    # budget=1 forces one row per chunk. Cosine distances of integer vectors are not exact
    # (normalisation rounds), so "d_an < d_ap + m" (bucketing) and "d_ap − d_an + m > 0" (the
    # reference) may decide a near-tie differently by one ulp: ties are tested exactly with
    # the euclidean metrics only.
    x, y = random_batch(seed, n, n_classes, integer=integer and metric != "cosine")
    kwargs = dict(margin=margin, metric=metric, smoothing=smoothing, reduction=reduction)
    got = batch_all_triplet_loss(x, y, memory_budget=budget, **kwargs)
    torch.testing.assert_close(got, batch_all_reference(x, y, **kwargs), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("smoothing", [None, 0.3])
@pytest.mark.parametrize("reduction", ["mean_active", "mean", "none"])
def test_gradient_matches_autograd_of_reference(metric, smoothing, reduction):
    x, y = random_batch(3, 12, 3)
    kwargs = dict(margin=0.8, metric=metric, smoothing=smoothing, reduction=reduction)
    a = x.clone().requires_grad_()
    b = x.clone().requires_grad_()
    weights = torch.linspace(0.5, 1.5, 12, dtype=torch.float64)
    out_a = batch_all_triplet_loss(a, y, **kwargs)
    out_b = batch_all_reference(b, y, **kwargs)
    ((out_a * weights).sum() if reduction == "none" else out_a).backward()
    ((out_b * weights).sum() if reduction == "none" else out_b).backward()
    torch.testing.assert_close(a.grad, b.grad)


def _function_inputs(seed=0, n=7, n_col=None, k_classes=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, k_classes, (n,), generator=g)
    batch = prepare_batch(x, y, "sqeuclidean")
    # an asymmetric, generic distance matrix: the Function must not rely on symmetry
    d = torch.rand(batch.distances.shape, generator=g, dtype=torch.float64) * 3
    return d.requires_grad_(), batch


def test_gradcheck_hinge_function():
    d, batch = _function_inputs()

    def fn(dist):
        per_anchor, _ = _BatchAllHinge.apply(
            dist, None, batch.positives, batch.positive_mask, batch, 0.7, 64
        )
        return per_anchor

    assert torch.autograd.gradcheck(fn, (d,))


def test_gradcheck_smooth_function():
    d, batch = _function_inputs(seed=1)

    def fn(dist):
        per_anchor, _ = _BatchAllSmooth.apply(
            dist, None, batch.positives, batch.positive_mask, batch, 0.7, 0.4, 64
        )
        return per_anchor

    assert torch.autograd.gradcheck(fn, (d,))


@pytest.mark.parametrize("smoothing", [None, 0.5])
def test_gradcheck_end_to_end(smoothing):
    x, y = random_batch(5, 8, 3)
    x.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda e: batch_all_triplet_loss(e, y, margin=1.0, smoothing=smoothing), (x,)
    )


@pytest.mark.parametrize(
    "labels",
    [
        torch.arange(6),  # no positives
        torch.zeros(6, dtype=torch.long),  # a single class: no negatives
    ],
)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [None, 0.5])
def test_no_valid_triplet_gives_zero_and_zero_gradient(labels, reduction, smoothing):
    x = torch.randn(6, 4, requires_grad=True)
    loss = batch_all_triplet_loss(x, labels, reduction=reduction, smoothing=smoothing)
    assert torch.equal(loss, torch.zeros_like(loss))
    loss.sum().backward()
    assert x.grad is not None and torch.equal(x.grad, torch.zeros_like(x))


def test_no_active_triplet_gives_zero_and_zero_gradient():
    x = torch.tensor([[0.0, 0.0], [0.0, 0.1], [5.0, 0.0], [5.0, 0.1]], requires_grad=True)
    loss = batch_all_triplet_loss(x, torch.tensor([0, 0, 1, 1]))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_identical_embeddings_finite_for_every_metric():
    for metric in METRICS:
        x = torch.ones(6, 3, requires_grad=True)
        loss = batch_all_triplet_loss(x, torch.tensor([0, 0, 1, 1, 2, 2]), metric=metric)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
        # every triplet has loss exactly the margin
        assert float(loss.detach()) == pytest.approx(0.2)


def test_float16_is_computed_in_float32():
    x, y = random_batch(2, 10, 3)
    half = x.half().requires_grad_()
    loss = batch_all_triplet_loss(half, y)
    assert loss.dtype == torch.float32
    expected = batch_all_reference(half.detach().float(), y)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert half.grad.dtype == torch.float16 and torch.isfinite(half.grad).all()


@pytest.mark.parametrize("smoothing", [None, 0.5])
def test_reference_set(smoothing):
    x, y = random_batch(7, 6, 3)
    r, ry = random_batch(8, 9, 4)
    kwargs = dict(margin=1.0, smoothing=smoothing, reduction="mean")
    got = batch_all_triplet_loss(x, y, ref_embeddings=r, ref_labels=ry, **kwargs)
    want = batch_all_reference(x, y, ref_embeddings=r, ref_labels=ry, **kwargs)
    torch.testing.assert_close(got, want)


def test_stats_are_detached_and_consistent():
    x, y = random_batch(1, 16, 4)
    x.requires_grad_()
    loss, stats = batch_all_triplet_loss(x, y, margin=1.0, return_stats=True)
    values = stats.as_dict()
    assert all(not getattr(stats, k).requires_grad for k in values)
    assert values["num_easy"] + values["num_semi_hard"] + values["num_hard"] == pytest.approx(
        values["num_triplets"]
    )
    # for the hinge, the active triplets are the hard and semi-hard ones (no exact ties here)
    assert values["num_active"] == values["num_hard"] + values["num_semi_hard"]
    total = batch_all_triplet_loss(x, y, margin=1.0, reduction="sum")
    assert float(loss.detach()) == pytest.approx(float(total.detach()) / values["num_active"])


def test_module_validates_eagerly_and_matches_functional():
    with pytest.raises(ValueError, match="margin"):
        BatchAllTripletLoss(margin=-1)
    with pytest.raises(ValueError, match="reduction"):
        BatchAllTripletLoss(reduction="avg")
    with pytest.raises(ValueError, match="metric"):
        BatchAllTripletLoss(metric="l1")
    x, y = random_batch(4, 10, 3)
    module = BatchAllTripletLoss(margin=0.5, reduction="mean")
    torch.testing.assert_close(
        module(x, y), batch_all_triplet_loss(x, y, margin=0.5, reduction="mean")
    )


def test_bad_input_raises_clear_errors():
    x = torch.randn(4, 3)
    with pytest.raises(TypeError, match="labels"):
        batch_all_triplet_loss(x, torch.zeros(4))
    with pytest.raises(ValueError, match="labels"):
        batch_all_triplet_loss(x, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN"):
        batch_all_triplet_loss(x * float("nan"), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="together"):
        batch_all_triplet_loss(x, torch.zeros(4, dtype=torch.long), ref_embeddings=x)


@pytest.mark.parametrize("smoothing", [None, 0.4])
def test_binary_search_path_equals_comparison_path(monkeypatch, smoothing):
    # above _COMPARE_MAX_K positives the bucketing uses searchsorted; force it on a small batch
    from tripletlab.functional import batch_all as module

    x, y = random_batch(11, 30, 3)
    kwargs = dict(margin=1.0, smoothing=smoothing, reduction="none")
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    by_comparison = batch_all_triplet_loss(a, y, **kwargs)
    monkeypatch.setattr(module, "_COMPARE_MAX_K", 0)
    by_search = batch_all_triplet_loss(b, y, memory_budget=1, **kwargs)
    torch.testing.assert_close(by_search, by_comparison)
    torch.testing.assert_close(by_search, batch_all_reference(x, y, **kwargs))
    by_comparison.sum().backward()
    by_search.sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_many_positives_take_the_search_path():
    # 40 samples of one class: 39 positives per anchor > _COMPARE_MAX_K
    x, y = random_batch(12, 50, 1)
    y = torch.cat([torch.zeros(40, dtype=torch.long), torch.arange(1, 11)])
    got = batch_all_triplet_loss(x, y, margin=1.0, reduction="sum")
    torch.testing.assert_close(got, batch_all_reference(x, y, margin=1.0, reduction="sum"))


def test_gradcheck_of_the_symmetric_distance_backward():
    from tripletlab.functional._refined_distances import _SelfSquaredDistances

    x, _ = random_batch(13, 7, 1)
    x.requires_grad_()
    assert torch.autograd.gradcheck(_SelfSquaredDistances.apply, (x,))


@pytest.mark.parametrize("histogram_min_k", [1, 1000])
def test_histogram_and_per_slot_counting_agree(monkeypatch, histogram_min_k):
    # the comparison path counts negatives per slot directly (few slots) or through a
    # histogram of w (many slots); both must give the reference loss and gradient
    from tripletlab.functional import batch_all as module

    monkeypatch.setattr(module, "_HISTOGRAM_MIN_K", histogram_min_k)
    for integer in (False, True):
        x, y = random_batch(21, 24, 3, integer=integer)
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        got = batch_all_triplet_loss(a, y, margin=1.0, reduction="none")
        want = batch_all_reference(b, y, margin=1.0, reduction="none")
        torch.testing.assert_close(got, want)
        (got * torch.arange(24.0, dtype=torch.float64)).sum().backward()
        (want * torch.arange(24.0, dtype=torch.float64)).sum().backward()
        if not integer:  # exact ties have a subgradient choice at the kink
            torch.testing.assert_close(a.grad, b.grad)


def test_gradcheck_of_the_cosine_distance_backward():
    from tripletlab.functional._refined_distances import _SelfCosineDistances

    x, _ = random_batch(14, 7, 1)
    x.requires_grad_()
    assert torch.autograd.gradcheck(_SelfCosineDistances.apply, (x,))
    # a zero row (cos defined as 0, not differentiable there) has distance 1 and no gradient
    z = x.detach().clone()
    z[3] = 0
    z.requires_grad_()
    dist = _SelfCosineDistances.apply(z)
    assert bool((dist[3] == 1).all())
    dist.sum().backward()
    assert bool((z.grad[3] == 0).all())


@pytest.mark.parametrize("smoothing", [None, 0.4])
def test_gradcheck_euclidean_chain_rule_through_the_squared_matrix(smoothing):
    # the euclidean graph holds the squared matrix; dL/dS = dL/dD / (2D) is applied in the
    # Function's own buffer
    x, y = random_batch(15, 9, 3)
    x.requires_grad_()

    def fn(e):
        return batch_all_triplet_loss(
            e, y, margin=0.7, metric="euclidean", smoothing=smoothing, reduction="none"
        )

    assert torch.autograd.gradcheck(fn, (x,))
