"""Cross-batch memory: a bounded FIFO of detached embeddings used as reference set."""

from __future__ import annotations

import pytest
import torch

from tripletlab.functional.distances import pairwise_distances
from tripletlab.nn.xbm import CrossBatchMemory, XBMLoss


def _brute_force_batch_all_sum(x, y, ref, ref_y, margin):
    """Σ over a in x, p, n in ref (label(p) = label(a) ≠ label(n)) of [d_ap − d_an + m]₊."""
    d = pairwise_distances(x, ref)
    total = x.new_zeros(())
    for a in range(len(x)):
        for p in range(len(ref)):
            for n in range(len(ref)):
                if ref_y[p] == y[a] and ref_y[n] != y[a]:
                    total = total + (d[a, p] - d[a, n] + margin).clamp_min(0)
    return total


def _sum_loss(x, y, ref_embeddings=None, ref_labels=None):
    if ref_embeddings is None:
        ref_embeddings, ref_labels = x, y
        # self-case: exclude p = a by giving each row its own "identity" copy
        total = x.new_zeros(())
        d = pairwise_distances(x)
        for a in range(len(x)):
            for p in range(len(x)):
                for n in range(len(x)):
                    if p != a and y[p] == y[a] and y[n] != y[a]:
                        total = total + (d[a, p] - d[a, n] + 0.5).clamp_min(0)
        return total
    return _brute_force_batch_all_sum(x, y, ref_embeddings, ref_labels, 0.5)


def test_memory_is_a_bounded_fifo() -> None:
    memory = CrossBatchMemory(size=5, embedding_dim=2)
    assert len(memory) == 0
    for step in range(3):  # 3 batches of 2 rows: the first row is pushed out
        rows = torch.arange(2 * step, 2 * step + 2, dtype=torch.float32)
        memory.enqueue(rows[:, None].expand(2, 2), rows.long())
    emb, labels = memory.contents()
    assert len(memory) == 5
    assert labels.tolist() == [1, 2, 3, 4, 5]
    assert emb[:, 0].tolist() == [1, 2, 3, 4, 5]
    # a batch larger than the memory keeps only its newest rows
    memory.enqueue(torch.arange(7.0)[:, None].expand(7, 2) + 100, torch.arange(7) + 100)
    assert memory.contents()[1].tolist() == [102, 103, 104, 105, 106]


def test_memory_is_detached_and_survives_a_state_dict_round_trip() -> None:
    memory = CrossBatchMemory(size=4, embedding_dim=3)
    x = torch.randn(3, 3, requires_grad=True)
    memory.enqueue(x * 2, torch.tensor([7, 8, 9]))
    assert not memory.contents()[0].requires_grad
    memory.enqueue(torch.ones(2, 3), torch.tensor([1, 2]))
    restored = CrossBatchMemory(size=4, embedding_dim=3)
    restored.load_state_dict(memory.state_dict())
    for got, want in zip(restored.contents(), memory.contents(), strict=True):
        assert torch.equal(got, want)
    assert restored.contents()[1].tolist() == [8, 9, 1, 2]


def test_memory_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="size"):
        CrossBatchMemory(size=0, embedding_dim=2)
    with pytest.raises(ValueError, match="embedding_dim"):
        CrossBatchMemory(size=2, embedding_dim=-1)
    with pytest.raises(ValueError, match="dimension 2"):
        CrossBatchMemory(size=2, embedding_dim=2).enqueue(torch.ones(1, 3), torch.tensor([0]))
    with pytest.raises(ValueError, match="weight"):
        XBMLoss(_sum_loss, memory_size=4, embedding_dim=2, weight=-1.0)
    with pytest.raises(TypeError, match="loss"):
        XBMLoss("batch_all", memory_size=4, embedding_dim=2)


def test_xbm_loss_adds_the_memory_term_and_only_the_batch_gets_gradients() -> None:
    torch.manual_seed(0)
    xbm = XBMLoss(_sum_loss, memory_size=6, embedding_dim=3, weight=0.5)
    first = torch.randn(4, 3, dtype=torch.float64)
    first_y = torch.tensor([0, 0, 1, 1])
    # call 1: empty memory, the plain batch loss
    assert torch.equal(xbm(first, first_y), _sum_loss(first, first_y))
    # call 2: plus λ·(anchors of the batch against the memory = the first batch)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1, 2, 0, 2])
    loss = xbm(x, y)
    want = _sum_loss(x, y) + 0.5 * _brute_force_batch_all_sum(
        x, y, first.float().double(), first_y, 0.5
    )
    torch.testing.assert_close(loss, want)
    assert float((want - _sum_loss(x, y)).detach()) > 0  # the memory term is not trivially zero
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert not xbm.memory.contents()[0].requires_grad
    assert xbm.memory.contents()[1].tolist() == [1, 1, 1, 2, 0, 2]  # oldest 2 dropped


def test_xbm_warm_up_and_eval_mode_leave_the_memory_alone() -> None:
    xbm = XBMLoss(_sum_loss, memory_size=8, embedding_dim=2, start_iteration=1)
    a, ya = torch.randn(4, 2), torch.tensor([0, 0, 1, 1])
    xbm(a, ya)  # iteration 0: enqueued, memory not yet used
    b, yb = torch.randn(4, 2), torch.tensor([0, 1, 0, 1])
    xbm.eval()
    before = len(xbm.memory)
    torch.testing.assert_close(
        xbm(b, yb), _sum_loss(b, yb) + _brute_force_batch_all_sum(b, yb, a, ya, 0.5)
    )
    assert len(xbm.memory) == before  # evaluation never writes into the memory
    state = xbm.state_dict()
    clone = XBMLoss(_sum_loss, memory_size=8, embedding_dim=2, start_iteration=1)
    clone.load_state_dict(state)
    assert clone.iteration == xbm.iteration == 1
    assert torch.equal(clone.memory.contents()[0], xbm.memory.contents()[0])


def test_xbm_with_the_library_batch_losses() -> None:
    from tripletlab.functional.batch_all import batch_all_triplet_loss
    from tripletlab.nn.batch_losses import BatchAllTripletLoss

    loss_fn = BatchAllTripletLoss(margin=0.5, reduction="sum")
    xbm = XBMLoss(loss_fn, memory_size=16, embedding_dim=4)
    gen = torch.Generator().manual_seed(5)
    prev, prev_y = torch.randn(8, 4, generator=gen), torch.arange(8) % 4
    xbm(prev, prev_y)
    x = torch.randn(8, 4, generator=gen, requires_grad=True)
    y = torch.arange(8) % 4
    got = xbm(x, y)
    want = batch_all_triplet_loss(x, y, margin=0.5, reduction="sum") + _brute_force_batch_all_sum(
        x, y, prev, prev_y, 0.5
    )
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    got.backward()
    assert torch.isfinite(x.grad).all()


def test_xbm_loss_returns_the_batch_terms_stats() -> None:
    from tripletlab.nn.batch_losses import BatchAllTripletLoss

    torch.manual_seed(0)
    x = torch.randn(16, 4)
    y = torch.arange(16) % 4
    inner = BatchAllTripletLoss(margin=0.2)
    xbm = XBMLoss(inner, memory_size=32, embedding_dim=4)
    first, stats = xbm(x, y, return_stats=True)
    want_loss, want_stats = inner(x, y, return_stats=True)
    torch.testing.assert_close(first, want_loss)  # memory empty: the batch term alone
    assert stats.as_dict() == want_stats.as_dict()
    second, _ = xbm(x, y, return_stats=True)  # now the memory term is added
    assert float(second) > float(first)
    assert len(xbm.memory) == 16 * 2
    assert torch.is_tensor(xbm(x, y))  # without return_stats: a tensor, as before
