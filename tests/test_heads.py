"""Embedding heads: pooling, projection, BNNeck, L2 normalisation."""

from __future__ import annotations

import pytest
import torch

from tripletlab.errors import ConfigError
from tripletlab.nn.heads import Embedder, EmbeddingHead, GeM


def test_gem_is_between_mean_and_max_and_learns_p():
    maps = torch.rand(3, 4, 5, 6)
    pool = GeM()
    out = pool(maps)
    assert (out >= maps.mean(dim=(2, 3)) - 1e-6).all()
    assert (out <= maps.amax(dim=(2, 3)) + 1e-6).all()
    out.sum().backward()
    assert pool.p.grad is not None and torch.isfinite(pool.p.grad)
    zeros = torch.zeros(1, 2, 3, 3, requires_grad=True)
    GeM()(zeros).sum().backward()
    assert torch.isfinite(zeros.grad).all()  # no NaN at all-zero ReLU maps


def test_avg_pooling_of_tokens_leaves_the_class_token_out_and_cls_reads_it():
    tokens = torch.zeros(2, 5, 3)
    tokens[:, 0] = 10.0
    tokens[:, 1:] = 1.0
    avg = EmbeddingHead("tokens", 3, has_cls=True, normalize=False)
    cls = EmbeddingHead("tokens", 3, pooling="cls", has_cls=True, normalize=False)
    assert avg(tokens).tolist() == [[1.0] * 3] * 2
    assert cls(tokens).tolist() == [[10.0] * 3] * 2


def test_bnneck_feeds_the_loss_before_and_retrieval_after_the_batchnorm():
    torch.manual_seed(0)
    head = EmbeddingHead("vector", 4, bnneck=True, normalize=False)
    x = torch.randn(16, 4) * 3 + 5
    head.train()
    assert torch.equal(head(x), x)  # f_t: the loss sees the features before BN
    assert not head.bnneck.bias.requires_grad
    head.eval()
    f_i = head(x)
    running = head.bnneck
    expected = (x - running.running_mean) / torch.sqrt(running.running_var + running.eps)
    torch.testing.assert_close(f_i, expected)
    f_t, f_i2 = head.both(x)
    assert torch.equal(f_t, x) and torch.equal(f_i2, f_i)


def test_projection_and_normalisation():
    head = EmbeddingHead("map", 8, embedding_dim=3)
    out = head(torch.rand(4, 8, 2, 2))
    assert out.shape == (4, 3)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(4))


@pytest.mark.parametrize(
    ("kind", "pooling", "has_cls", "match"),
    [
        ("vector", "gem", False, "returns pooled vectors"),
        ("tokens", "gem", True, "needs CNN feature maps"),
        ("map", "cls", False, "needs a model with a class token"),
        ("tokens", "cls", False, "needs a model with a class token"),
        ("map", "max", False, "pooling must be one of"),
    ],
)
def test_pooling_that_does_not_fit_the_backbone_is_refused(kind, pooling, has_cls, match):
    with pytest.raises(ConfigError, match=match):
        EmbeddingHead(kind, 4, pooling=pooling, has_cls=has_cls)


def test_embedder_applies_preprocess_in_the_embedders_mode():
    class Scale(torch.nn.Module):
        def forward(self, x):
            return x * (2.0 if self.training else 1.0)

    net = Embedder(torch.nn.Identity(), EmbeddingHead("vector", 2, normalize=False), Scale())
    x = torch.ones(1, 2)
    assert net(x).tolist() == [[2.0, 2.0]]
    net.eval()
    assert net(x).tolist() == [[1.0, 1.0]]
