"""Exact ties and duplicates in float32, and embeddings too large for their distances.

The distance matrix comes from a GEMM whose rounding depends on where the rows sit in the
batch; the entries near a decision are recomputed directly (functional/_ties.py). These
tests pin the definitions on the inputs that expose it: integer-valued embeddings (every
distance exact, so float32 must decide exactly as float64) and duplicated rows (identical rows
exactly 0 apart, d(a, p) = d(a, n) when n duplicates p), whatever the order of the batch.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_references import (
    batch_all_reference,
    batch_hard_reference,
    batch_semi_hard_reference,
    direct_distance_matrix,
    triplet_class_reference,
)
from tripletlab.errors import NumericalRangeError, TripletlabError
from tripletlab.functional import (
    batch_all_triplet_loss,
    batch_contrastive_loss,
    batch_hard_triplet_loss,
    batch_semi_hard_triplet_loss,
    classify_triplets,
    contrastive_loss,
    triplet_margin_loss,
)
from tripletlab.functional._batch_input import prepare_batch

# every test runs on the small-batch forms and on the general ones (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("loss_path")

LOSSES = {
    "all": (batch_all_triplet_loss, batch_all_reference),
    "hard": (batch_hard_triplet_loss, batch_hard_reference),
    "semi_hard": (batch_semi_hard_triplet_loss, batch_semi_hard_reference),
}
REDUCTIONS = ["mean", "mean_active", "sum", "none"]


def tied_batch(seed: int, n: int, dim: int, n_classes: int, n_copies: int, integer: bool):
    """float64 rows (small integers, or normal draws) with ``n_copies`` rows duplicated."""
    g = torch.Generator().manual_seed(seed)
    if integer:
        x = torch.randint(-3, 4, (n, dim), generator=g).double()
    else:
        x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    for _ in range(n_copies):
        src, dst = torch.randint(0, n, (2,), generator=g).tolist()
        x[dst] = x[src]
    y = torch.randint(0, n_classes, (n,), generator=g)
    return x, y


def _kwargs(name, margin, metric, reduction, fallback):
    kwargs = dict(margin=margin, metric=metric, reduction=reduction)
    if name == "semi_hard":
        kwargs["fallback"] = fallback
    return kwargs


@settings(max_examples=120, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 10),
    dim=st.integers(1, 4),
    n_classes=st.integers(1, 4),
    n_copies=st.integers(0, 4),
    name=st.sampled_from(sorted(LOSSES)),
    metric=st.sampled_from(["sqeuclidean", "euclidean"]),
    margin=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
    reduction=st.sampled_from(REDUCTIONS),
    fallback=st.sampled_from(["hardest", "easiest", "skip"]),
)
def test_integer_float32_decides_as_float64_and_as_the_definition(
    seed, n, dim, n_classes, n_copies, name, metric, margin, reduction, fallback
):
    # integer rows and dyadic margins: every squared distance, d_ap + m and tie is exact, so
    # float32 must equal the float64 brute force (decisions exactly, values to rounding of √)
    x, y = tied_batch(seed, n, dim, n_classes, n_copies, integer=True)
    loss, reference = LOSSES[name]
    kwargs = _kwargs(name, margin, metric, reduction, fallback)
    got = loss(x.float(), y, **kwargs)
    want32 = reference(x.float(), y, **kwargs)
    want64 = reference(x, y, **kwargs)
    torch.testing.assert_close(got, want32, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got.double(), want64, rtol=1e-6, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 10),
    dim=st.integers(1, 4),
    n_classes=st.integers(1, 4),
    n_copies=st.integers(0, 4),
    metric=st.sampled_from(["sqeuclidean", "euclidean"]),
    margin=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
)
def test_integer_float32_class_counts_equal_the_definition(
    seed, n, dim, n_classes, n_copies, metric, margin
):
    x, y = tied_batch(seed, n, dim, n_classes, n_copies, integer=True)
    want = triplet_class_reference(x, y, margin, metric)
    for dtype in (torch.float32, torch.float64):
        got = classify_triplets(x.to(dtype), y, margin=margin, metric=metric)
        counts = (int(got.num_easy), int(got.num_semi_hard), int(got.num_hard))
        assert counts == (want["easy"], want["semi_hard"], want["hard"])
        _, stats = batch_all_triplet_loss(
            x.to(dtype), y, margin=margin, metric=metric, return_stats=True
        )
        assert int(stats.num_active) == _active_triplets(x, y, margin, metric)


def _active_triplets(x, y, margin, metric):
    """#{valid (a, p, n) : d_an < d_ap + m} on the float64 brute-force distances."""
    d = direct_distance_matrix(x, None, metric)
    same = y[:, None] == y[None, :]
    valid = (same & ~torch.eye(len(y), dtype=torch.bool))[:, :, None] & ~same[:, None, :]
    return int((valid & (d[:, None, :] < d[:, :, None] + margin)).sum())


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 10),
    dim=st.integers(1, 5),
    n_classes=st.integers(1, 4),
    n_copies=st.integers(1, 5),
    name=st.sampled_from(sorted(LOSSES)),
    metric=st.sampled_from(["sqeuclidean", "euclidean", "cosine"]),
    margin=st.sampled_from([0.0, 0.2, 1.0]),
    reduction=st.sampled_from(REDUCTIONS),
    fallback=st.sampled_from(["hardest", "easiest", "skip"]),
)
def test_duplicates_in_float32_are_order_free_and_match_the_brute_force(
    seed, n, dim, n_classes, n_copies, name, metric, margin, reduction, fallback
):
    x64, y = tied_batch(seed, n, dim, n_classes, n_copies, integer=False)
    x = x64.float()
    loss, reference = LOSSES[name]
    kwargs = _kwargs(name, margin, metric, reduction, fallback)
    got = loss(x, y, **kwargs)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    again = loss(x[perm], y[perm], **kwargs)
    want = got[perm] if reduction == "none" else got
    torch.testing.assert_close(again, want, rtol=1e-5, atol=1e-5)
    # the float32 brute force decides on the same (correctly rounded) distances
    torch.testing.assert_close(got, reference(x, y, **kwargs), rtol=1e-5, atol=1e-5)
    # float64 from the same float32 rows: duplicates are duplicates there too
    torch.testing.assert_close(
        got.double(), reference(x.double(), y, **kwargs), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean", "cosine"])
def test_identical_rows_are_exactly_zero_apart_in_float32(metric):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 32, generator=g) * 10 + 100  # far from the origin: the GEMM cancels
    x[40:] = x[:24]
    batch = prepare_batch(x, torch.arange(64) % 5, metric)
    d = batch.distances
    assert bool((d[40:, :24].diagonal() == 0).all()) and bool((d[:24, 40:].diagonal() == 0).all())
    assert bool((d.diagonal() == 0).all())


def test_batch_contrastive_mean_active_does_not_depend_on_the_batch_order():
    # issue 9: duplicated float32 rows changed mean_active from 5.6865 to 8.5298 on reordering
    g = torch.Generator().manual_seed(3)
    x = torch.randn(7, 4, generator=g)
    x[1] = x[0]
    x[5] = x[2]
    y = torch.tensor([0, 0, 1, 1, 2, 1, 2])
    for metric in ("euclidean", "cosine", "sqeuclidean"):
        first = batch_contrastive_loss(x, y, metric=metric, reduction="mean_active")
        for seed in range(5):
            perm = torch.randperm(7, generator=torch.Generator().manual_seed(seed))
            again = batch_contrastive_loss(x[perm], y[perm], metric=metric, reduction="mean_active")
            torch.testing.assert_close(again, first, rtol=1e-6, atol=0)
        want = batch_contrastive_loss(x.double(), y, metric=metric, reduction="mean_active")
        torch.testing.assert_close(first.double(), want, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ overflow-sized inputs


def _huge(dtype=torch.float32, magnitude=1e20):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(12, 6, generator=g, dtype=torch.float64)
    return (x * magnitude).to(dtype), torch.arange(12) % 3


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("smoothing", [None, 0.5])
def test_huge_float32_embeddings_give_the_float64_loss(name, metric, smoothing):
    x, y = _huge()
    loss, _ = LOSSES[name]
    margin = 1e19 if metric == "euclidean" else 0.2
    mu = smoothing and (1e19 if metric == "euclidean" else smoothing)
    leaf = x.clone().requires_grad_()
    got = loss(leaf, y, margin=margin, metric=metric, smoothing=mu)
    got.backward()
    want = loss(x.double(), y, margin=margin, metric=metric, smoothing=mu)
    assert bool(torch.isfinite(got)) and bool(torch.isfinite(leaf.grad).all())
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=0)


def test_huge_float32_embeddings_work_for_explicit_triplets_and_pairs():
    x, _ = _huge()
    a, p, n = x[:4], x[4:8], x[8:]
    got = triplet_margin_loss(a, p, n, margin=1e19, metric="euclidean", smoothing=1e18)
    want = triplet_margin_loss(
        a.double(), p.double(), n.double(), margin=1e19, metric="euclidean", smoothing=1e18
    )
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=0)
    same = torch.tensor([0, 0, 0, 0])  # negatives far beyond the margin: a finite loss (0)
    assert float(contrastive_loss(a, p, same, margin=1.0, metric="euclidean")) == 0.0
    cos = contrastive_loss(a, p, torch.tensor([1, 0, 1, 0]), margin=0.5, metric="cosine")
    want_cos = contrastive_loss(
        a.double(), p.double(), torch.tensor([1, 0, 1, 0]), margin=0.5, metric="cosine"
    )
    torch.testing.assert_close(cos.double(), want_cos, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "call",
    [
        lambda x, y: batch_all_triplet_loss(x, y),
        lambda x, y: batch_hard_triplet_loss(x, y),
        lambda x, y: batch_semi_hard_triplet_loss(x, y),
        lambda x, y: batch_contrastive_loss(x, y, metric="euclidean"),
        lambda x, y: triplet_margin_loss(x[:4], x[4:8], x[8:]),
        lambda x, y: contrastive_loss(x[:6], x[6:], torch.ones(6, dtype=torch.long)),
    ],
)
def test_losses_too_large_for_float32_raise_one_clear_error(call):
    # squared distances of 1e20 embeddings (~1e40) do not exist in float32: refuse, never NaN
    x, y = _huge()
    with pytest.raises(NumericalRangeError, match=r"overflows torch\.float32") as info:
        call(x, y)
    assert isinstance(info.value, TripletlabError)
