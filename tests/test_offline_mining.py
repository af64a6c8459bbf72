"""Offline mining over the whole training set, against brute force; the alternating trainer."""

from __future__ import annotations

import pytest
import torch

from tripletlab.functional.distances import pairwise_distances
from tripletlab.train.offline_mining import (
    OfflineMiner,
    OfflineMiningTrainer,
    TripletBatches,
    mine_offline_triplets,
)


def _pairs_data(n_classes: int = 12, dim: int = 3, seed: int = 0):
    """Classes of exactly two samples: each anchor's positive is fixed, so the selection is
    deterministic and can be compared with brute force exactly."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2 * n_classes, dim, generator=gen, dtype=torch.float64)
    y = torch.arange(2 * n_classes) // 2
    return x, y


def _brute_force(x, y, strategy, margin, budget, metric="sqeuclidean"):
    d = pairwise_distances(x, metric=metric)
    out = []
    for a in range(len(x)):
        p = a ^ 1  # the other member of the pair
        chosen = []
        for n in range(len(x)):
            if y[n] == y[a]:
                continue
            gap = float(d[a, n] - d[a, p])
            if (strategy == "hard" and gap <= 0) or (strategy == "semi_hard" and 0 < gap <= margin):
                chosen.append((gap, n))
        chosen.sort()
        out += [(a, p, n) for _, n in chosen[:budget]]
    return sorted(out)


@pytest.mark.parametrize("strategy", ["hard", "semi_hard"])
@pytest.mark.parametrize("budget", [1, 3])
def test_selection_equals_brute_force_when_all_candidates_are_searched(strategy, budget):
    x, y = _pairs_data()
    a, p, n = mine_offline_triplets(
        x, y, strategy, margin=1.0, triplets_per_anchor=budget, candidates=len(x) - 1,
        positives_per_anchor=1, chunk_size=5,
    )  # fmt: skip
    got = sorted(zip(a.tolist(), p.tolist(), n.tolist(), strict=True))
    want = _brute_force(x, y, strategy, 1.0, budget)
    assert got == want
    assert len(want) > 0


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_other_metrics_follow_the_same_definitions(metric):
    x, y = _pairs_data(seed=3)
    a, p, n = mine_offline_triplets(
        x, y, "semi_hard", margin=0.3, metric=metric, triplets_per_anchor=2,
        candidates=len(x) - 1, positives_per_anchor=1,
    )  # fmt: skip
    got = sorted(zip(a.tolist(), p.tolist(), n.tolist(), strict=True))
    assert got == _brute_force(x, y, "semi_hard", 0.3, 2, metric)


def test_negatives_come_from_the_nearest_candidates_and_the_budget_holds():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(300, 4, generator=gen)
    y = torch.randint(0, 6, (300,), generator=gen)
    a, p, n = mine_offline_triplets(
        x, y, "hard", margin=0.2, triplets_per_anchor=2, candidates=10, chunk_size=64
    )
    assert len(a) > 0
    d = pairwise_distances(x)
    assert (y[a] == y[p]).all() and (y[a] != y[n]).all() and (a != p).all()
    assert (d[a, n] <= d[a, p]).all()  # every triplet is hard
    assert torch.bincount(a, minlength=300).max() <= 2
    # the negative is among the 10 nearest neighbours of its anchor
    d.fill_diagonal_(float("inf"))
    tenth = d.topk(10, dim=1, largest=False).values[:, -1]
    assert (d[a, n] <= tenth[a]).all()


def test_all_strategy_draws_valid_random_triplets_reproducibly():
    gen = torch.Generator().manual_seed(2)
    y = torch.randint(0, 5, (200,), generator=gen)
    x = torch.randn(200, 3, generator=gen)
    a, p, n = mine_offline_triplets(x, y, "all", triplets_per_anchor=3, seed=4, chunk_size=50)
    assert len(a) == 3 * 200
    assert (y[a] == y[p]).all() and (y[a] != y[n]).all() and (a != p).all()
    again = mine_offline_triplets(x, y, "all", triplets_per_anchor=3, seed=4, chunk_size=50)
    assert all(torch.equal(u, v) for u, v in zip((a, p, n), again, strict=True))
    # negatives are drawn from all other classes, not only near ones
    assert len(torch.unique(n)) > 150


def test_results_do_not_depend_on_the_chunk_size():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(150, 3, generator=gen)
    y = torch.randint(0, 7, (150,), generator=gen)
    one = mine_offline_triplets(x, y, "semi_hard", margin=0.5, triplets_per_anchor=2)
    many = mine_offline_triplets(
        x, y, "semi_hard", margin=0.5, triplets_per_anchor=2, chunk_size=16
    )
    assert all(torch.equal(u, v) for u, v in zip(one, many, strict=True))


def test_singletons_and_tiny_inputs_give_no_triplets_instead_of_errors():
    x = torch.randn(4, 2)
    a, _, _ = mine_offline_triplets(x, torch.tensor([0, 1, 2, 3]), "hard")
    assert len(a) == 0
    a, _, _ = mine_offline_triplets(x[:1], torch.tensor([0]), "semi_hard")
    assert len(a) == 0
    with pytest.raises(ValueError, match="strategy"):
        mine_offline_triplets(x, torch.arange(4), "hardest")
    with pytest.raises(ValueError, match="triplets_per_anchor"):
        OfflineMiner(triplets_per_anchor=0)


@pytest.mark.bench
def test_faiss_flat_backend_mines_the_same_triplets():
    pytest.importorskip("faiss")
    from tripletlab.evaluate.knn_faiss import FaissKNN

    gen = torch.Generator().manual_seed(6)
    x = torch.randn(400, 8, generator=gen)
    y = torch.randint(0, 10, (400,), generator=gen)
    kwargs = {"margin": 0.5, "triplets_per_anchor": 2, "candidates": 16, "seed": 1}
    want = mine_offline_triplets(x, y, "semi_hard", **kwargs)
    got = mine_offline_triplets(x, y, "semi_hard", backend=FaissKNN("flat"), **kwargs)
    assert all(torch.equal(u, v) for u, v in zip(got, want, strict=True))


def test_triplet_batches_embed_each_sample_once_per_step():
    triplets = (torch.tensor([0, 1, 5, 5]), torch.tensor([1, 0, 6, 6]), torch.tensor([5, 5, 0, 1]))
    batches = TripletBatches(triplets, 3, margin=0.2, metric="sqeuclidean", seed=0, epoch=1)
    assert len(batches) == 2
    emb = torch.randn(7, 2)
    seen = 0
    for index in batches:
        assert len(index) == len(set(index))
        local_emb = emb[index]
        loss = batches.loss(local_emb, torch.zeros(len(index)))
        rows = batches.triplets[batches.order[seen : seen + 3]]
        want = torch.nn.functional.relu(
            ((emb[rows[:, 0]] - emb[rows[:, 1]]) ** 2).sum(1)
            - ((emb[rows[:, 0]] - emb[rows[:, 2]]) ** 2).sum(1)
            + 0.2
        ).mean()
        torch.testing.assert_close(loss, want)
        seen += 3


def _trainer(tmp_path, schedule):
    from tripletlab.functional import batch_hard_triplet_loss

    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3)
    return OfflineMiningTrainer(
        model,
        batch_hard_triplet_loss,
        torch.optim.SGD(model.parameters(), lr=0.05),
        miner=OfflineMiner("semi_hard", margin=0.5, triplets_per_anchor=2, candidates=8),
        schedule=schedule,
        batch_triplets=32,
        checkpoint_dir=tmp_path,
        progress=False,
        seed=3,
    )


def test_alternating_trainer_mines_on_odd_epochs_and_resumes_exactly(tmp_path):
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(120) % 6
    x = torch.randn(120, 6, generator=gen) + torch.nn.functional.one_hot(y, 6) * 2

    full = _trainer(tmp_path / "full", "alternate")
    history = full.fit(x, y, epochs=3, p=3, k=4)
    assert [("offline_triplets" in h) for h in history] == [True, False, True]
    assert history[0]["offline_triplets"] > 0
    expected_steps = (
        -(-history[0]["offline_triplets"] // 32)
        + 120 // 12
        + -(-history[2]["offline_triplets"] // 32)
    )
    assert full.global_step == expected_steps

    part = _trainer(tmp_path / "part", "alternate")
    part.fit(x, y, epochs=2, p=3, k=4)
    resumed = _trainer(tmp_path / "part", "alternate")
    resumed.fit(x, y, epochs=3, p=3, k=4, resume_from=tmp_path / "part" / "last.pt")
    for name, value in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], value, rtol=0, atol=0)
    with pytest.raises(ValueError, match="schedule"):
        _trainer(tmp_path / "bad", "sometimes")


def test_the_knn_search_keeps_to_the_backend_memory_budget():
    from tripletlab.evaluate.knn import TorchKNN

    rows_seen: list[int] = []

    class SpyKNN(TorchKNN):
        def iter_search(self, *args, rows=None, **kwargs):
            rows_seen.append(rows)
            return super().iter_search(*args, rows=rows, **kwargs)

    gen = torch.Generator().manual_seed(8)
    x = torch.randn(500, 4, generator=gen)
    y = torch.randint(0, 5, (500,), generator=gen)
    small = SpyKNN(memory_budget_bytes=16 * 500 * 20)  # ~20 query rows per distance block
    got = mine_offline_triplets(x, y, "hard", candidates=8, backend=small, chunk_size=4096)
    assert rows_seen == [small.chunk_rows(500, 8)] and rows_seen[0] < 30
    want = mine_offline_triplets(x, y, "hard", candidates=8)
    assert all(torch.equal(u, v) for u, v in zip(got, want, strict=True))
