"""Re-id (CMC, mAP, mINP) and DML (P@1, R-precision, MAP@R, Recall@k) protocols: hand-computed
values on miniature layouts on disk, and brute-force references on random data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layout_builders import build_inshop, build_market1501
from protocol_reference import dml_reference, reid_reference
from tripletlab.data.layouts import load_layout
from tripletlab.evaluate.dml_protocol import (
    dml_metrics,
    dml_metrics_from_blocks,
    dml_ranks,
    per_class_table,
)
from tripletlab.evaluate.ranking import distance_blocks, rank_blocks
from tripletlab.evaluate.reid import reid_metrics, reid_metrics_from_blocks
from tripletlab.evaluate.retrieval import retrieval_metrics

# 1-D embeddings of the miniature Market-1501 files (see layout_builders.MARKET_*).
_POSITIONS = {
    "0001_c1s1_000100_01.jpg": 0.0,  # query, identity 1, camera 1
    "0002_c2s1_000200_01.jpg": 10.0,  # query, identity 2, camera 2
    "0003_c1s1_000300_01.jpg": 20.0,  # query, identity 3, camera 1
    "0001_c1s1_000101_01.jpg": 0.0,  # same identity + camera as query 1: excluded
    "-1_c1s1_000900_01.jpg": 0.05,  # junk: ignored although nearest
    "0000_c3s1_000901_01.jpg": 0.3,  # distractor: a negative at rank 1 for query 1
    "0001_c2s1_000102_01.jpg": 0.5,  # query 1's only valid match: rank 2
    "0002_c1s1_000201_01.jpg": 10.4,  # query 2's only valid match: rank 1
    "0002_c2s1_000202_01.jpg": 10.0,  # same identity + camera as query 2: excluded
    "0003_c1s1_000301_01.jpg": 20.0,  # query 3's only match, same camera: no valid match
}


def _market(tmp_path):
    layout = load_layout(f"market1501:{build_market1501(tmp_path)}")
    q, g = layout.split("query"), layout.split("gallery")

    def embed(split):
        return torch.tensor([[_POSITIONS[p.name]] for p in split.paths])

    return q, g, embed(q), embed(g)


def test_market_hand_computed_values(tmp_path):
    q, g, qe, ge = _market(tmp_path)
    m = reid_metrics(qe, q.labels, ge, g.labels, query_cameras=q.cameras, gallery_cameras=g.cameras)
    # Query 1: distractor at rank 1, match at rank 2 → AP ½, INP ½. Query 2: AP 1, INP 1.
    # Query 3: no valid match → skipped.
    assert m["n_queries"] == 2 and m["n_queries_without_match"] == 1
    assert m["rank_1"] == pytest.approx(0.5)
    assert m["rank_5"] == pytest.approx(1.0)
    assert m["map"] == pytest.approx(0.75)
    assert m["minp"] == pytest.approx(0.75)
    assert m["cmc"][:3] == pytest.approx([0.5, 1.0, 1.0])


def test_market_trapezoid_ap_of_the_matlab_script(tmp_path):
    q, g, qe, ge = _market(tmp_path)
    m = reid_metrics(
        qe,
        q.labels,
        ge,
        g.labels,
        query_cameras=q.cameras,
        gallery_cameras=g.cameras,
        average_precision="trapezoid",
    )
    # Query 1: hit at rank 2 → ½(0/1 + 1/2) = ¼; query 2: hit at rank 1 → 1.
    assert m["map"] == pytest.approx(0.625)


def test_without_cameras_only_junk_is_ignored(tmp_path):
    q, g, qe, ge = _market(tmp_path)
    m = reid_metrics(qe, q.labels, ge, g.labels)
    # Query 1: hits at kept ranks 1 and 3 (junk skipped, distractor at 2): AP (1 + 2/3)/2.
    # Query 2: hits at 1 and 2; query 3: hit at 1.
    assert m["n_queries"] == 3
    assert m["map"] == pytest.approx(((1 + 2 / 3) / 2 + 1 + 1) / 3)
    assert m["minp"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert m["rank_1"] == pytest.approx(1.0)


def test_junk_kept_as_a_negative_when_asked(tmp_path):
    q, g, qe, ge = _market(tmp_path)
    m = reid_metrics(
        qe,
        q.labels,
        ge,
        g.labels,
        query_cameras=q.cameras,
        gallery_cameras=g.cameras,
        junk_label=None,
    )
    assert m["map"] == pytest.approx((1 / 3 + 1) / 2)  # query 1's match falls to rank 3


def _random_reid(seed, n_q=23, n_g=61, n_ids=6, dim=4):
    rng = np.random.default_rng(seed)
    q_ids = rng.integers(1, n_ids, n_q)
    g_ids = rng.integers(-1, n_ids, n_g)  # includes junk −1 and distractors 0
    q_cams, g_cams = rng.integers(1, 4, n_q), rng.integers(1, 4, n_g)
    qe = torch.tensor(rng.normal(size=(n_q, dim)))
    ge = torch.tensor(rng.normal(size=(n_g, dim)))
    return q_ids, g_ids, q_cams, g_cams, qe, ge


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("budget", [56 * 61, 56 * 61 * 5, 2**20])
def test_reid_equals_the_official_loop_for_any_chunking(seed, budget):
    q_ids, g_ids, q_cams, g_cams, qe, ge = _random_reid(seed)
    dist = torch.cdist(qe, ge).numpy()
    ref = reid_reference(dist, q_ids, g_ids, q_cams, g_cams, max_rank=10)
    options = {"query_cameras": q_cams, "gallery_cameras": g_cams, "max_rank": 10}
    got = reid_metrics(qe, q_ids, ge, g_ids, memory_budget_bytes=budget, **options)
    assert got["n_queries"] == ref["n_queries"]
    assert got["map"] == pytest.approx(ref["map"], abs=1e-12)
    assert got["minp"] == pytest.approx(ref["minp"], abs=1e-12)
    assert got["cmc"] == pytest.approx(ref["cmc"].tolist(), abs=1e-12)
    trapezoid = reid_metrics(
        qe, q_ids, ge, g_ids, average_precision="trapezoid", memory_budget_bytes=budget, **options
    )
    assert trapezoid["map"] == pytest.approx(ref["map_trapezoid"], abs=1e-12)


def test_block_size_follows_the_memory_budget():
    _, _, _, _, qe, ge = _random_reid(0, n_q=40, n_g=100)
    sizes = [len(b) for _, b in distance_blocks(qe, ge, memory_budget_bytes=56 * 100 * 7)]
    assert sizes == [7, 7, 7, 7, 7, 5]


def test_ties_are_broken_by_gallery_index():
    q = torch.zeros(1, 2)
    g = torch.zeros(3, 2)  # all at distance 0
    ranked = rank_blocks(distance_blocks(q, g), np.array([1]), np.array([2, 1, 1]), top_k=3)
    assert ranked.top.tolist() == [[0, 1, 2]]
    assert ranked.first_rank.tolist() == [2]


def test_no_valid_query_gives_nan_not_an_error():
    m = reid_metrics(torch.zeros(1, 2), np.array([5]), torch.ones(2, 2), np.array([1, 2]))
    assert m["n_queries"] == 0 and np.isnan(m["map"]) and np.isnan(m["rank_1"])


@pytest.mark.parametrize("seed", [0, 3])
def test_dml_self_search_matches_reference_and_retrieval_metrics(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 5, 40)
    y[0] = 99  # a lone query: R = 0, left out
    x = torch.tensor(rng.normal(size=(40, 3)))
    got = dml_metrics(x, y, ks=(1, 2, 4), memory_budget_bytes=56 * 40 * 3)
    ref = dml_reference(torch.cdist(x, x).numpy(), y, y, exclude_self=True)
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    fast = retrieval_metrics(x, torch.tensor(y), ks=(1, 2, 4))
    for key in ("precision_at_1", "r_precision", "map_at_r", "recall_at_4"):
        assert got[key] == pytest.approx(fast[key], abs=1e-12), key
    assert got["n_lone_queries"] == 1


def test_dml_query_gallery_on_inshop_layout(tmp_path):
    layout = load_layout(f"inshop:{build_inshop(tmp_path)}")
    q, g = layout.split("query"), layout.split("gallery")
    # Query 80 sits nearer gallery 81 than gallery 80; query 81 is right.
    qe = torch.tensor([[0.0], [0.5]])
    ge = torch.tensor([[1.0], [0.4]])
    m = dml_metrics(qe, q.labels, ge, g.labels, ks=(1, 2))
    assert m["precision_at_1"] == pytest.approx(0.5)
    assert m["recall_at_2"] == pytest.approx(1.0)
    assert m["map_at_r"] == pytest.approx(0.5)  # R = 1: query 80 scores 0 within R
    blocks = distance_blocks(qe, ge)
    assert dml_metrics_from_blocks(blocks, q.labels, g.labels, ks=(1, 2)) == m


def test_per_class_table_worst_first_with_confusions():
    # Class 0 is found right; classes 1 and 2 are interleaved so each confuses the other.
    x = torch.tensor([[0.0], [0.1], [5.0], [5.05], [5.1], [5.15]])
    y = np.array([0, 0, 1, 2, 1, 2])
    rows = per_class_table(dml_ranks(x, y, top_k=1), y, y, class_names={1: "one", 2: "two"})
    assert [r["label"] for r in rows][-1] == 0
    assert rows[-1]["precision_at_1"] == 1.0 and rows[-1]["confused_with"] is None
    worst = {r["label"]: r for r in rows[:2]}
    assert worst[1]["confused_with"] == 2 and worst[1]["confused_name"] == "two"
    assert worst[2]["confused_with"] == 1 and worst[2]["name"] == "two"
    assert worst[1]["precision_at_1"] == 0.0


def test_reid_from_blocks_equals_direct():
    q_ids, g_ids, q_cams, g_cams, qe, ge = _random_reid(5)
    direct = reid_metrics(qe, q_ids, ge, g_ids, query_cameras=q_cams, gallery_cameras=g_cams)
    blocks = distance_blocks(qe, ge, metric="euclidean", rows=4)
    again = reid_metrics_from_blocks(
        blocks, q_ids, g_ids, query_cameras=q_cams, gallery_cameras=g_cams
    )
    assert again == direct
