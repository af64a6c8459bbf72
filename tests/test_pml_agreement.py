"""Where tripletlab's batch losses and pytorch-metric-learning (PML) agree, and where not.

Run with ``pytest -m bench`` (needs the ``bench`` extra). PML is configured for the FaceNet
form: ``LpDistance(power=2, normalize_embeddings=False)`` (squared, un-normalised L2).
"""

import functools

import pytest
import torch

from tripletlab.functional import (
    batch_all_triplet_loss,
    batch_hard_triplet_loss,
    batch_semi_hard_triplet_loss,
    mine_triplets,
    triplet_margin_loss,
)
from tripletlab.testing import check_batch_triplet_loss

pytestmark = pytest.mark.bench

MARGIN = 0.5


def pml():
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    miners = pytest.importorskip("pytorch_metric_learning.miners")
    distances = pytest.importorskip("pytorch_metric_learning.distances")
    reducers = pytest.importorskip("pytorch_metric_learning.reducers")
    return losses, miners, distances, reducers


def pml_loss(reducer="avg_nonzero", miner=None, smooth=False):
    losses, miners, distances, reducers = pml()
    distance = distances.LpDistance(power=2, normalize_embeddings=False)
    red = reducers.AvgNonZeroReducer() if reducer == "avg_nonzero" else reducers.MeanReducer()
    loss = losses.TripletMarginLoss(
        margin=MARGIN, distance=distance, reducer=red, smooth_loss=smooth
    )
    if miner == "batch_hard":
        mine = miners.BatchHardMiner(distance=distance)
    elif miner is not None:
        mine = miners.TripletMarginMiner(margin=MARGIN, type_of_triplets=miner, distance=distance)
    else:
        mine = None

    def fn(embeddings, labels):
        indices = None if mine is None else mine(embeddings, labels)
        return loss(embeddings, labels, indices)

    return fn


def batch(seed=0, n=24, classes=5):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = torch.randn(classes, 6, generator=g, dtype=torch.float64)[y]
    return x + 0.7 * torch.randn(n, 6, generator=g, dtype=torch.float64), y


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(
    ("reducer", "reduction", "miner"),
    [
        ("avg_nonzero", "mean_active", None),
        ("mean", "mean", None),
        ("avg_nonzero", "mean_active", "all"),
    ],
)
def test_batch_all_equals_pml(seed, reducer, reduction, miner):
    x, y = batch(seed)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = batch_all_triplet_loss(a, y, margin=MARGIN, reduction=reduction)
    theirs = pml_loss(reducer, miner)(b, y)
    torch.testing.assert_close(ours, theirs)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("seed", range(3))
def test_pml_all_miner_drops_easy_triplets(seed):
    # TripletMarginMiner("all") keeps d_an − d_ap ≤ margin only: with MeanReducer it averages
    # over the non-easy triplets, not over all of them (same loss as AvgNonZeroReducer).
    x, y = batch(seed)
    _, stats = batch_all_triplet_loss(x, y, margin=MARGIN, return_stats=True)
    total = batch_all_triplet_loss(x, y, margin=MARGIN, reduction="sum")
    expected = total / (stats.num_hard + stats.num_semi_hard)
    torch.testing.assert_close(pml_loss("mean", "all")(x, y), expected)
    assert not torch.allclose(expected, batch_all_triplet_loss(x, y, MARGIN, reduction="mean"))


def test_pml_smooth_loss_is_smoothing_one():
    x, y = batch(1)
    torch.testing.assert_close(
        batch_all_triplet_loss(x, y, margin=MARGIN, smoothing=1.0),
        pml_loss(smooth=True)(x, y),
    )


@pytest.mark.parametrize("seed", range(5))
def test_batch_hard_equals_pml_batch_hard_miner_with_avg_nonzero(seed):
    x, y = batch(seed)
    torch.testing.assert_close(
        batch_hard_triplet_loss(x, y, margin=MARGIN, reduction="mean_active"),
        pml_loss("avg_nonzero", "batch_hard")(x, y),
    )


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("pml_type", "ours"), [("hard", "hard"), ("semihard", "semi_hard")])
def test_pml_miners_keep_every_triplet_of_the_class(seed, pml_type, ours):
    # PML's "hard"/"semihard" miners = mine_triplets(strategy) + the explicit loss, NOT
    # FaceNet's one-negative-per-pair semi-hard selection.
    x, y = batch(seed)
    a, p, n = mine_triplets(x, y, ours, margin=MARGIN)
    explicit = triplet_margin_loss(x[a], x[p], x[n], margin=MARGIN, reduction="mean_active")
    torch.testing.assert_close(explicit, pml_loss("avg_nonzero", pml_type)(x, y))


def test_conformance_of_pml():
    """The suite on PML: which definitions it meets (asserted) — see the README's table."""
    report_all = check_batch_triplet_loss(
        pml_loss("avg_nonzero"), mining="all", margin=MARGIN, raise_on_failure=False
    )
    report_mean = check_batch_triplet_loss(
        pml_loss("mean"), mining="all", margin=MARGIN, reduction="mean", raise_on_failure=False
    )
    report_hard = check_batch_triplet_loss(
        pml_loss("avg_nonzero", "batch_hard"),
        mining="hard",
        margin=MARGIN,
        reduction="mean_active",
        raise_on_failure=False,
    )
    report_semi = check_batch_triplet_loss(
        pml_loss("avg_nonzero", "semihard"),
        mining="semi_hard",
        margin=MARGIN,
        reduction="mean_active",
        raise_on_failure=False,
    )
    for report in (report_all, report_mean, report_hard, report_semi):
        print(report, report.failures)
    assert report_all.ok and report_mean.ok and report_hard.ok
    # PML's semihard miner is a different definition from FaceNet's: all triplets with
    # 0 < d_an − d_ap ≤ m, and nothing (instead of a fallback negative) when none exists
    failed = {f.split(":")[0] for f in report_semi.failures}
    assert {"value", "ties", "identical_embeddings"} <= failed


def test_conformance_of_tripletlab_in_pml_settings():
    check_batch_triplet_loss(
        functools.partial(batch_all_triplet_loss, margin=MARGIN), mining="all", margin=MARGIN
    )
    facenet = functools.partial(
        batch_semi_hard_triplet_loss, margin=MARGIN, reduction="mean_active"
    )
    check_batch_triplet_loss(facenet, mining="semi_hard", margin=MARGIN, reduction="mean_active")
