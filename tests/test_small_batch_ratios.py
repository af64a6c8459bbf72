"""benchmarks/small_batch_ratios.py: the ratio table says what the records say."""

import pytest
from benchmarks.small_batch_ratios import markdown, measure


def _record(loss, b, k, ratio, peer="st_all"):
    return {
        "loss": loss,
        "B": b,
        "K": k,
        "metric": "euclidean",
        "time_ratio": ratio,
        "fastest_peer": peer,
        "largest_loss_difference": 1e-8,
    }


def test_table_marks_the_slower_cells_and_counts_the_others():
    records = [
        _record("tl_all", 32, 2, 0.5),
        _record("tl_all", 32, 4, 1.25),
        _record("tl_hard", 32, 2, 1.0),
        _record("tl_semi", 32, 4, 0.9),
    ]
    table = markdown(records, "euclidean")
    assert "| batch-all | 32 | 0.50 | **1.25** |" in table
    assert "| batch-hard | 32 | 1.00 | — |" in table
    assert "3 of 4 at most the fastest peer's median time" in table
    assert "the largest ratio 1.25 (batch-all, B = 32, K = 4, against st_all)" in table


@pytest.mark.bench
def test_every_peer_gives_the_same_loss_interleaved():
    record = measure("tl_all", 16, 4, "euclidean", repeats=2)
    assert set(record["methods"]) == {"tl_all", "st_all", "pml_all", "pml_miner_all"}
    assert record["largest_loss_difference"] < 1e-5
    assert record["time_ratio"] > 0
