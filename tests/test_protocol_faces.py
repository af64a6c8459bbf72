"""Face verification (10-fold), thresholds at a target FAR, open-set identification."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from layout_builders import build_lfw
from tripletlab.data.layouts import load_layout
from tripletlab.errors import DataError
from tripletlab.evaluate.face_verification import (
    best_accuracy_threshold,
    pair_distances,
    ten_fold_verification,
)
from tripletlab.evaluate.open_set import (
    UNKNOWN,
    best_matches,
    identification_threshold,
    identify,
    open_set_identification,
)
from tripletlab.evaluate.thresholds import tar_at_far, threshold_at_far

# Hand-computed: fold 0 = pairs 0-3, fold 1 = pairs 4-7 (matched first, as in pairs.txt).
_D = np.array([0.1, 0.4, 0.3, 0.9, 0.2, 0.5, 0.6, 0.35])
_SAME = np.array([1, 1, 0, 0, 1, 1, 0, 0], dtype=bool)
_FOLDS = np.repeat([0, 1], 4)


def test_ten_fold_hand_computed():
    r = ten_fold_verification(_D, _SAME, _FOLDS, fars=(0.5,))
    # Fold 0: τ chosen on fold 1 = 0.275 (3/4 there); on fold 0: 0.1 in, 0.4 out, both
    # mismatched out → 3/4. Fold 1: τ = 0.2 from fold 0; 0.2 in, 0.5 out, 0.6/0.35 out → 3/4.
    assert [f["threshold"] for f in r["folds"]] == pytest.approx([0.275, 0.2])
    assert [f["accuracy"] for f in r["folds"]] == [0.75, 0.75]
    assert r["accuracy_mean"] == 0.75 and r["accuracy_std"] == 0.0
    # FAR 0.5 with 2 impostors per training fold: one let in. Fold 0 trains on fold 1's
    # impostors {0.35, 0.6} → τ just below 0.6 → TAR on fold 0 = 2/2, FAR 1/2.
    # Fold 1 trains on {0.3, 0.9} → τ just below 0.9 → TAR 2/2, FAR on {0.6, 0.35} = 1.
    assert r["tar_at_far_0.5_mean"] == 1.0
    assert r["far_at_far_0.5_mean"] == pytest.approx(0.75)
    # Pooled: impostors {0.3, 0.35, 0.6, 0.9}, 2 allowed → τ < 0.6; genuine ≤ τ: 0.1 0.2 0.4 0.5.
    assert r["tar_at_far_0.5_pooled"] == 1.0


def test_accuracy_std_is_the_population_std():
    d = np.array([0.1, 0.9, 0.1, 0.9, 0.1, 0.2, 0.1, 0.9, 0.9, 0.1, 0.1, 0.9])
    same = np.array([1, 0] * 6, dtype=bool)
    r = ten_fold_verification(d, same, np.repeat([0, 1, 2], 4), fars=())
    accuracies = [f["accuracy"] for f in r["folds"]]
    assert r["accuracy_std"] == pytest.approx(np.std(accuracies))
    assert accuracies == [1.0, 0.75, 0.5]


def test_lfw_layout_end_to_end(tmp_path):
    layout = load_layout(f"lfw:{build_lfw(tmp_path)}")
    test, pairs = layout.split("test"), layout.pairs
    perfect = torch.eye(3, dtype=torch.float64)[torch.as_tensor(test.labels)]
    d = pair_distances(perfect, pairs.first, pairs.second)
    assert d.tolist() == [0.0 if s else np.sqrt(2) for s in pairs.same]
    r = ten_fold_verification(d, pairs.same, pairs.folds, fars=(0.0,))
    assert r["accuracy_mean"] == 1.0 and r["n_folds"] == 2
    assert r["tar_at_far_0_mean"] == 1.0


@given(
    st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=30),
    st.floats(0, 1),
)
def test_threshold_at_far_is_the_largest_within_target(impostors, far):
    d = np.array(impostors)
    choice = threshold_at_far(d, far)
    assert choice.achieved_far <= far + 1e-12
    assert choice.achieved_far == np.mean(d <= choice.threshold)
    # Any larger threshold that admits one more impostor value exceeds the target.
    above = d[d > choice.threshold]
    if len(above):
        assert np.mean(d <= above.min()) > far


def test_threshold_errors():
    with pytest.raises(DataError, match="no impostor"):
        threshold_at_far(np.array([]), 0.1)
    with pytest.raises(ValueError, match="target_far"):
        threshold_at_far(np.array([1.0]), 1.5)
    with pytest.raises(DataError, match="NaN"):
        threshold_at_far(np.array([np.nan]), 0.1)


def test_tar_at_far_reports_the_achieved_far():
    r = tar_at_far(np.array([0.1, 0.2, 0.3]), np.array([0.25, 0.25, 0.9, 1.0]), 0.3)
    # 1 impostor allowed but 0.25 is tied twice: τ stays below 0.25, FAR 0, TAR 2/3.
    assert r["achieved_far"] == 0.0 and r["tar"] == pytest.approx(2 / 3)


def test_best_accuracy_threshold_accepting_nothing_when_best():
    tau, accuracy = best_accuracy_threshold(np.array([0.5, 0.6]), np.array([False, False]))
    assert accuracy == 1.0 and tau < 0.5


def test_open_set_with_non_mated_probes():
    gallery = torch.tensor([[0.0], [10.0], [20.0]])
    g_labels = np.array([1, 2, 3])
    # mated: 1 (right, d .5), 2 (nearest is 3: wrong, d 1), 3 (right, d 2); non-mated: d 3, 4.
    probes = torch.tensor([[0.5], [19.0], [22.0], [13.0], [6.0]])
    p_labels = np.array([1, 2, 3, 8, 9])
    r = open_set_identification(probes, p_labels, gallery, g_labels, fars=(0.0, 0.5))
    assert r["n_mated"] == 3 and r["n_non_mated"] == 2 and r["impostors"] == "non_mated"
    assert r["rank_1"] == pytest.approx(2 / 3)
    # FPIR 0: τ < 3 → both correct mated probes (.5, 2) in → DIR 2/3.
    assert r["dir_at_far_0"] == pytest.approx(2 / 3) and r["achieved_far_0"] == 0.0
    # FPIR 0.5: one non-mated allowed → τ < 4.
    assert r["achieved_far_0.5"] == 0.5 and r["dir_at_far_0.5"] == pytest.approx(2 / 3)


def test_open_set_leave_identity_out_when_all_enrolled():
    gallery = torch.tensor([[0.0], [10.0]])
    probes = torch.tensor([[1.0], [8.0]])
    r = open_set_identification(probes, np.array([1, 2]), gallery, np.array([1, 2]), fars=(0.0,))
    # Impostor scores: 9 (probe 1 to identity 2) and 8; τ < 8 admits both genuine (1, 2).
    assert r["impostors"] == "leave_identity_out"
    assert r["dir_at_far_0"] == 1.0 and r["threshold_at_far_0"] < 8.0


def test_identify_says_unknown_beyond_the_identification_threshold():
    gallery = torch.tensor([[0.0], [0.2], [10.0], [10.3]])
    labels = np.array([4, 4, 7, 7])
    choice = identification_threshold(gallery, labels, 0.0)
    # Impostor scores (nearest other identity): 10, 9.8, 9.8, 10.1 → τ just below 9.8.
    assert choice.achieved_far == 0.0 and choice.threshold == pytest.approx(9.8, abs=1e-5)
    out = identify(torch.tensor([[0.05], [5.0], [10.25], [50.0]]), gallery, labels, 2.0)
    assert out["label"].tolist() == [4, UNKNOWN, 7, UNKNOWN]
    assert out["index"].tolist() == [0, 1, 3, 3]
    assert out["known"].tolist() == [True, False, True, False]
    assert out["distance"][1] == pytest.approx(4.8)


def test_best_matches_chunked_equals_single_block():
    rng = np.random.default_rng(0)
    g = torch.tensor(rng.normal(size=(50, 3)))
    labels = rng.integers(0, 4, 50)
    whole = best_matches(g, labels, g, labels, exclude_self=True)
    tiny = best_matches(g, labels, g, labels, exclude_self=True, memory_budget_bytes=56 * 50 * 3)
    assert np.array_equal(whole.nearest, tiny.nearest)
    assert np.allclose(whole.other_distance, tiny.other_distance)
    brute = torch.cdist(g, g).numpy()
    np.fill_diagonal(brute, np.inf)
    assert np.array_equal(whole.nearest, brute.argmin(axis=1))
