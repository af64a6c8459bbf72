import pytest
import torch

from tripletlab.functional import batch_contrastive_loss
from tripletlab.pipeline.factories import build_loss
from tripletlab.pipeline.registries import LOSS_NAMES


def test_contrastive_from_the_run_default_metric_squares_the_euclidean_distance_once():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 4, generator=g)
    labels = torch.arange(12) % 3
    loss, _ = build_loss("contrastive", margin=1.0, metric="sqeuclidean", reduction="mean")(
        x, labels, return_stats=True
    )
    want = batch_contrastive_loss(x, labels, margin=1.0, metric="euclidean", reduction="mean")
    torch.testing.assert_close(loss, want)


@pytest.mark.parametrize("name", sorted(LOSS_NAMES))
def test_every_named_loss_trains_on_a_batch(name):
    x = torch.randn(8, 3, requires_grad=True)
    out = build_loss(name)(x, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    loss = out[0] if isinstance(out, tuple) else out
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


def test_unknown_loss_is_named():
    with pytest.raises(ValueError, match="loss must be one of"):
        build_loss("arcface")
