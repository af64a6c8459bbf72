"""The conformance suites of tripletlab.testing, run on tripletlab, on torch, on PML (bench) and on
deliberately broken implementations (which must fail, naming what is wrong).

Tolerances: tripletlab's own functions are checked in float64 at atol = 1e-7, rtol = 1e-6.
``torch.nn.functional.triplet_margin_loss`` computes ``‖a − p + eps‖`` with eps = 1e-6 inside
the norm, so its distances differ from the definition by up to eps·√D (D = 8 here: 2.8e-6):
it is checked at atol = 1e-5 (with eps = 0 it passes at 1e-7), and it returns NaN for an empty
batch with ``reduction="mean"`` (the one check it fails).
"""

import functools

import pytest
import torch
import torch.nn.functional as TF

import tripletlab
from tripletlab.functional import contrastive_loss, triplet_margin_loss
from tripletlab.testing import ConformanceReport, check_pair_loss, check_triplet_loss

METRICS = ["sqeuclidean", "euclidean", "cosine"]
REDUCTIONS = ["mean", "mean_active", "sum", "none"]


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("smoothing", [None, 0.3])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_tripletlab_triplet_loss_conforms(metric, smoothing, reduction):
    fn = functools.partial(
        triplet_margin_loss, margin=0.3, metric=metric, smoothing=smoothing, reduction=reduction
    )
    report = check_triplet_loss(
        fn, metric=metric, margin=0.3, smoothing=smoothing, reduction=reduction, name="tripletlab"
    )
    expected = {
        "value",
        "nonnegative",
        "gradients",
        "permutation",
        "reduction",
        "identical_points",
        "empty_batch",
    }
    if smoothing is None:
        expected.add("inactive_zero")
    assert report.ok and set(report.passed) == expected


def test_tripletlab_module_conforms():
    check_triplet_loss(tripletlab.TripletMarginLoss(margin=0.2), squared=True, margin=0.2)
    check_triplet_loss(
        tripletlab.TripletMarginLoss(margin=1.0, metric="euclidean", reduction="sum"),
        squared=False,
        margin=1.0,
        reduction="sum",
    )


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_torch_triplet_margin_loss_conforms_where_the_definitions_coincide(reduction):
    fn = functools.partial(TF.triplet_margin_loss, margin=0.2, p=2, reduction=reduction)
    # p = 2, not squared: the definitions coincide up to torch's eps inside the norm
    report = check_triplet_loss(
        fn,
        squared=False,
        margin=0.2,
        reduction=reduction,
        atol=1e-5,
        check_empty=False,
        name="torch",
    )
    assert report.ok
    module = torch.nn.TripletMarginLoss(margin=0.7, reduction=reduction)
    check_triplet_loss(
        module, squared=False, margin=0.7, reduction=reduction, atol=1e-5, check_empty=False
    )


def test_torch_differs_on_empty_batches_and_at_tight_tolerance():
    fn = functools.partial(TF.triplet_margin_loss, margin=0.2)
    report = check_triplet_loss(fn, squared=False, margin=0.2, atol=1e-5, raise_on_failure=False)
    assert [f.split(":")[0] for f in report.failures] == ["empty_batch"]
    assert "non-finite" in report.failures[0]  # torch's mean of nothing is NaN
    tight = check_triplet_loss(
        fn,
        squared=False,
        margin=0.2,
        atol=1e-9,
        rtol=1e-9,
        check_empty=False,
        raise_on_failure=False,
    )
    assert not tight.ok  # the eps inside the norm is visible at 1e-9
    # with eps = 0 torch is the definition exactly (its norm's gradient at 0 is 0, not NaN)
    exact = functools.partial(TF.triplet_margin_loss, margin=0.2, eps=0.0)
    check_triplet_loss(exact, squared=False, margin=0.2, check_empty=False)


def test_torch_with_a_squared_distance_function_conforms_to_the_squared_form():
    module = torch.nn.TripletMarginWithDistanceLoss(
        distance_function=lambda x, y: ((x - y) ** 2).sum(dim=1), margin=0.2
    )
    check_triplet_loss(module, squared=True, margin=0.2, check_empty=False)


# ----------------------------------------------------------------- broken implementations


def no_hinge(a, p, n):
    return (((a - p) ** 2).sum(1) - ((a - n) ** 2).sum(1) + 0.2).mean()


def summed_instead_of_mean(a, p, n):
    return triplet_margin_loss(a, p, n, reduction="sum")


def naive_sqrt(a, p, n):
    d_ap = ((a - p) ** 2).sum(1).sqrt()
    d_an = ((a - n) ** 2).sum(1).sqrt()
    return (d_ap - d_an + 0.2).clamp_min(0).mean()


class _HalfGradient(torch.autograd.Function):
    """The right forward with a backward that forgets seed 000's factor 2."""

    @staticmethod
    def forward(ctx, a, p, n):
        ctx.save_for_backward(a, p, n)
        return (((a - p) ** 2).sum(1) - ((a - n) ** 2).sum(1) + 0.2).clamp_min(0)

    @staticmethod
    def backward(ctx, grad):
        a, p, n = ctx.saved_tensors
        active = ((((a - p) ** 2).sum(1) - ((a - n) ** 2).sum(1) + 0.2) > 0).to(a.dtype)
        w = (grad * active)[:, None]
        return w * (n - p), -w * (a - p), w * (a - n)


def half_gradient(a, p, n):
    return _HalfGradient.apply(a, p, n).mean()


@pytest.mark.parametrize(
    ("fn", "kwargs", "must_fail"),
    [
        (no_hinge, {}, {"value", "nonnegative", "inactive_zero", "gradients"}),
        (summed_instead_of_mean, {}, {"value", "gradients", "reduction"}),
        (naive_sqrt, {"squared": False}, {"identical_points"}),
        (half_gradient, {}, {"gradients"}),
    ],
)
def test_broken_implementations_are_caught(fn, kwargs, must_fail):
    report = check_triplet_loss(fn, margin=0.2, raise_on_failure=False, **kwargs)
    failed = {f.split(":")[0] for f in report.failures}
    assert must_fail <= failed
    with pytest.raises(AssertionError, match="conformance check"):
        report.raise_if_failed()


def test_report_and_argument_errors():
    report = check_triplet_loss(triplet_margin_loss)
    assert isinstance(report, ConformanceReport) and "passed" in str(report)
    with pytest.raises(AssertionError, match="gradients: d/d anchor"):
        check_triplet_loss(half_gradient, margin=0.2)
    with pytest.raises(ValueError, match="contradicts"):
        check_triplet_loss(triplet_margin_loss, squared=False, metric="sqeuclidean")


# ----------------------------------------------------------------- pair loss


@pytest.mark.parametrize("form", ["hadsell", "squared"])
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_tripletlab_pair_loss_conforms(form, metric, reduction):
    fn = functools.partial(
        contrastive_loss, margin=0.7, form=form, metric=metric, reduction=reduction
    )
    report = check_pair_loss(fn, form=form, metric=metric, margin=0.7, reduction=reduction)
    assert report.ok and len(report.passed) == 9


def test_pair_module_conforms():
    check_pair_loss(
        tripletlab.ContrastiveLoss(margin=1.5, form="squared"), form="squared", margin=1.5
    )


def hadsell_without_square(x1, x2, same):
    d = (x1 - x2).norm(dim=1)
    y = same.double()
    return (y * d**2 + (1 - y) * (1.0 - d).clamp_min(0)).mean()


def roles_swapped(x1, x2, same):
    return contrastive_loss(x1, x2, 1 - same)


def asymmetric(x1, x2, same):
    return contrastive_loss(x1, x2, same) + 0.01 * (x1.sum() - x2.sum()) ** 2


@pytest.mark.parametrize(
    ("fn", "must_fail"),
    [
        (hadsell_without_square, {"value", "gradients"}),
        (roles_swapped, {"value", "positive_zero", "inactive_zero"}),
        (asymmetric, {"value"}),
    ],
)
def test_broken_pair_losses_are_caught(fn, must_fail):
    report = check_pair_loss(fn, raise_on_failure=False)
    assert must_fail <= {f.split(":")[0] for f in report.failures}


# ----------------------------------------------------------------- peers (bench extra)


@pytest.mark.bench
def test_pml_triplet_margin_loss_conforms_with_squared_distance_and_mean_reducer():
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.reducers import MeanReducer

    loss = pml_losses.TripletMarginLoss(
        margin=0.2, distance=LpDistance(power=2, normalize_embeddings=False), reducer=MeanReducer()
    )

    def pml_explicit(a, p, n):
        k = len(a)
        emb = torch.cat([a, p, n])
        labels = torch.cat([torch.arange(k), torch.arange(k), torch.arange(k) + k])
        idx = torch.arange(k)
        return loss(emb, labels, indices_tuple=(idx, idx + k, idx + 2 * k))

    report = check_triplet_loss(
        pml_explicit, squared=True, margin=0.2, atol=1e-6, raise_on_failure=False
    )
    # PML's LpDistance(power=2) builds the squared distance from the euclidean one, so its
    # gradient at distance 0 is as for the definition; the empty case returns 0.
    assert report.ok, report.failures


# ----------------------------------------------------------------- docstring examples

DOCUMENTED_MODULES = [
    "tripletlab.functional.triplet",
    "tripletlab.functional.contrastive",
    "tripletlab.functional.regression_losses",
    "tripletlab.functional.classification_losses",
    "tripletlab.functional.similarity_losses",
    "tripletlab.functional.activations",
    "tripletlab.nn.losses",
    "tripletlab.nn.activations",
    "tripletlab.nn.networks",
    "tripletlab.testing.explicit",
]


@pytest.mark.parametrize("module_name", DOCUMENTED_MODULES)
def test_docstring_examples_run(module_name):
    import doctest
    import importlib

    module = importlib.import_module(module_name)
    torch.manual_seed(0)
    result = doctest.testmod(
        module, extraglobs={"torch": torch}, optionflags=doctest.NORMALIZE_WHITESPACE
    )
    assert result.attempted > 0 and result.failed == 0
