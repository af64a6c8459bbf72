import functools

import pytest
import torch

from tripletlab.functional import (
    batch_all_triplet_loss,
    batch_hard_triplet_loss,
    batch_semi_hard_triplet_loss,
)
from tripletlab.testing import check_batch_triplet_loss

SETTINGS = [
    ("sqeuclidean", None, "mean_active"),
    ("euclidean", None, "mean"),
    ("cosine", 0.5, "sum"),
    ("sqeuclidean", 0.3, "mean"),
]


@pytest.mark.parametrize(("metric", "smoothing", "reduction"), SETTINGS)
def test_batch_all_conforms(metric, smoothing, reduction):
    kwargs = dict(margin=0.5, metric=metric, smoothing=smoothing, reduction=reduction)
    fn = functools.partial(batch_all_triplet_loss, **kwargs)
    check_batch_triplet_loss(fn, mining="all", name="batch_all", **kwargs)


@pytest.mark.parametrize(("metric", "smoothing", "reduction"), SETTINGS)
def test_batch_hard_conforms(metric, smoothing, reduction):
    kwargs = dict(margin=0.5, metric=metric, smoothing=smoothing, reduction=reduction)
    fn = functools.partial(batch_hard_triplet_loss, **kwargs)
    check_batch_triplet_loss(fn, mining="hard", name="batch_hard", **kwargs)


@pytest.mark.parametrize("fallback", ["hardest", "easiest", "skip"])
@pytest.mark.parametrize(("metric", "smoothing", "reduction"), SETTINGS[:2])
def test_batch_semi_hard_conforms(metric, smoothing, reduction, fallback):
    kwargs = dict(margin=0.5, metric=metric, smoothing=smoothing, reduction=reduction)
    fn = functools.partial(batch_semi_hard_triplet_loss, fallback=fallback, **kwargs)
    check_batch_triplet_loss(fn, mining="semi_hard", fallback=fallback, name="semi", **kwargs)


def naive_batch_all(embeddings, labels, margin=0.2):
    """A typical hand-written batch-all: divides by the number of positive values (NaN-prone)."""
    d = torch.cdist(embeddings, embeddings) ** 2
    same = labels[:, None] == labels[None, :]
    valid = (same & ~torch.eye(len(labels), dtype=torch.bool))[:, :, None] & ~same[:, None, :]
    loss = (d[:, :, None] - d[:, None, :] + margin).clamp_min(0) * valid
    return loss.sum() / (loss > 0).sum()


def test_suite_catches_a_naive_implementation():
    report = check_batch_triplet_loss(naive_batch_all, raise_on_failure=False)
    failed = {f.split(":")[0] for f in report.failures}
    # 0/0 = NaN without positives, negatives or active triplets
    assert {"no_positives", "no_negatives", "no_active"} <= failed
    assert "value" in report.passed


def test_suite_catches_the_wrong_mining_rule():
    report = check_batch_triplet_loss(
        functools.partial(batch_hard_triplet_loss, reduction="mean_active"),
        mining="all",
        raise_on_failure=False,
    )
    assert any(f.startswith("value") for f in report.failures)
    with pytest.raises(AssertionError, match="value"):
        check_batch_triplet_loss(batch_hard_triplet_loss, mining="all")


@pytest.mark.parametrize(
    "fn", [batch_all_triplet_loss, batch_hard_triplet_loss, batch_semi_hard_triplet_loss]
)
def test_empty_and_single_sample_batches(fn):
    for n in (0, 1):
        x = torch.randn(n, 4, requires_grad=True)
        loss, stats = fn(x, torch.zeros(n, dtype=torch.long), return_stats=True)
        loss.backward()
        assert float(loss.detach()) == 0.0 and torch.equal(x.grad, torch.zeros_like(x))
        assert stats.as_dict()["num_triplets"] == 0.0
        assert fn(x, torch.zeros(n, dtype=torch.long), reduction="none").shape == (n,)


@pytest.mark.parametrize(
    "module",
    [
        "tripletlab.functional.positives",
        "tripletlab.functional.batch_all",
        "tripletlab.functional.batch_hard",
        "tripletlab.functional.batch_semi_hard",
        "tripletlab.functional.triplet_types",
        "tripletlab.functional.mining",
        "tripletlab.data.sampler",
        "tripletlab.nn.batch_losses",
        "tripletlab.testing.batch",
    ],
)
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), extraglobs={"torch": torch})
    assert result.attempted > 0 and result.failed == 0
