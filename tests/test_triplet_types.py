import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_references import random_batch, triplet_class_reference
from tripletlab.functional import TripletStats, classify_triplets, pairwise_distances


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 10),
    n_classes=st.integers(1, 4),
    integer=st.booleans(),
    metric=st.sampled_from(["sqeuclidean", "euclidean", "cosine"]),
    margin=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
)
def test_counts_equal_enumeration(seed, n, n_classes, integer, metric, margin):
    x, y = random_batch(seed, n, n_classes, integer=integer)
    counts = classify_triplets(x, y, margin, metric=metric, return_masks=True)
    want = triplet_class_reference(x, y, margin, metric)
    got = {
        "easy": int(counts.num_easy),
        "semi_hard": int(counts.num_semi_hard),
        "hard": int(counts.num_hard),
    }
    assert got == want
    assert int(counts.num_triplets) == sum(want.values())
    for name, mask in counts.masks.items():
        assert int(mask.sum()) == want[name]
    # the three classes partition the valid triplets
    union = (
        counts.masks["easy"].int() + counts.masks["semi_hard"].int() + counts.masks["hard"].int()
    )
    assert union.numel() == 0 or int(union.max()) <= 1


def test_distance_matrix_input_matches_embeddings():
    x, y = random_batch(2, 12, 3)
    d = pairwise_distances(x)
    a = classify_triplets(x, y, 0.5)
    b = classify_triplets(d, y, 0.5, is_distance_matrix=True)
    assert (int(a.num_easy), int(a.num_semi_hard), int(a.num_hard)) == (
        int(b.num_easy),
        int(b.num_semi_hard),
        int(b.num_hard),
    )
    with pytest.raises(ValueError, match="square"):
        classify_triplets(d[:5], y, 0.5, is_distance_matrix=True)


def test_masks_are_refused_for_large_batches():
    x = torch.randn(300, 2)
    with pytest.raises(ValueError, match="return_masks"):
        classify_triplets(x, torch.arange(300) % 5, return_masks=True)
    counts = classify_triplets(x, torch.arange(300) % 5)  # counts alone are fine
    assert int(counts.num_triplets) == 300 * 59 * 240


def test_stats_dataclass_as_dict():
    stats = TripletStats(*(torch.tensor(float(i)) for i in range(11)))
    d = stats.as_dict()
    assert list(d) == [
        "num_triplets",
        "num_active",
        "num_easy",
        "num_semi_hard",
        "num_hard",
        "active_fraction",
        "easy_fraction",
        "semi_hard_fraction",
        "hard_fraction",
        "mean_d_ap",
        "mean_d_an",
    ]
    assert all(isinstance(v, float) for v in d.values()) and d["mean_d_an"] == 10.0


def test_stats_means_and_empty_batches():
    from tripletlab.functional import batch_all_triplet_loss

    x, y = random_batch(3, 8, 2)
    _, stats = batch_all_triplet_loss(x, y, return_stats=True)
    d = pairwise_distances(x)
    same = (y[:, None] == y[None, :]) & ~torch.eye(8, dtype=torch.bool)
    different = y[:, None] != y[None, :]
    assert float(stats.mean_d_ap) == pytest.approx(float(d[same].mean()))
    assert float(stats.mean_d_an) == pytest.approx(float(d[different].mean()))
    _, empty = batch_all_triplet_loss(x, torch.arange(8), return_stats=True)
    values = empty.as_dict()
    # no positives: every count, fraction and mean d_ap is 0 (not NaN); negatives still exist
    assert all(v == 0.0 for k, v in values.items() if k != "mean_d_an")
    off_diagonal = ~torch.eye(8, dtype=torch.bool)
    assert values["mean_d_an"] == pytest.approx(float(d[off_diagonal].mean()))
