"""The batch losses under torch.compile: one clean graph break, no recompilation, same numbers.

Each loss is skipped by dynamo (functional/_compile.py) so the user's network compiles around
it. Run with the "aot_eager" backend: it traces and partitions forward and backward like
inductor but emits no C++, so the test stays fast on CPU.
"""

import pytest
import torch

from tripletlab.functional import (
    batch_all_triplet_loss,
    batch_contrastive_loss,
    batch_hard_triplet_loss,
    batch_semi_hard_triplet_loss,
)

LOSSES = [
    batch_all_triplet_loss,
    batch_hard_triplet_loss,
    batch_semi_hard_triplet_loss,
    batch_contrastive_loss,
]


def _net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))


def _batches(n, b=64, k=4):
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(b, 16, generator=g), (torch.arange(b) // k)[torch.randperm(b, generator=g)])
        for _ in range(n)
    ]


@pytest.mark.parametrize("loss_fn", LOSSES, ids=lambda f: f.__name__)
def test_a_training_step_has_one_graph_break_at_the_loss(loss_fn):
    net = _net()

    def step(x, y):
        return loss_fn(torch.nn.functional.normalize(net(x), dim=1), y, metric="euclidean") * 2

    x, y = _batches(1)[0]
    explained = torch._dynamo.explain(step)(x, y)
    assert explained.graph_break_count == 1
    assert "disable" in str(explained.break_reasons[0].reason)


@pytest.mark.parametrize(
    "loss_fn", [batch_all_triplet_loss, batch_hard_triplet_loss], ids=lambda f: f.__name__
)
def test_compiled_step_equals_eager_and_does_not_recompile(loss_fn):
    torch._dynamo.reset()
    eager_net, compiled_net = _net(), _net()
    eager_opt = torch.optim.SGD(eager_net.parameters(), lr=0.1)
    compiled_opt = torch.optim.SGD(compiled_net.parameters(), lr=0.1)

    def forward(net, x, y):
        return loss_fn(torch.nn.functional.normalize(net(x), dim=1), y, metric="euclidean")

    compiled_forward = torch.compile(forward, backend="aot_eager")
    frames = []
    for x, y in _batches(3):
        for net, opt, fn in (
            (eager_net, eager_opt, forward),
            (compiled_net, compiled_opt, compiled_forward),
        ):
            opt.zero_grad()
            loss = fn(net, x, y)
            loss.backward()
            opt.step()
        frames.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
        torch.testing.assert_close(
            list(compiled_net.parameters()), list(eager_net.parameters()), rtol=1e-5, atol=1e-6
        )
    # new labels every step, same shapes: the graphs compiled on the first step are reused
    assert frames[0] > 0 and frames[-1] == frames[0]
