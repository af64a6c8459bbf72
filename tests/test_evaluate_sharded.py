"""Sharded retrieval metrics over 2 gloo ranks equal one process on the whole set, exactly.

The ranks are started with ``torch.multiprocessing.spawn`` and a file rendezvous (fast);
a slow test runs the same through ``torchrun --standalone``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from tripletlab.evaluate import evaluate_embeddings, retrieval_metrics
from tripletlab.evaluate.sharded import shard_range, sharded_retrieval_metrics

WORLD = 2
N = 203  # odd: the two shards differ in size
KS = (1, 3, 8)


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 7, (N,), generator=g)
    labels[-1] = 99  # a lone query: left out and counted on every rank
    centres = torch.randn(100, 6, generator=g)
    return centres[labels] + 0.9 * torch.randn(N, 6, generator=g), labels


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    from tripletlab import distributed as tdist

    torch.set_num_threads(1)
    tdist.init_distributed(
        "gloo", timeout_s=60, rank=rank, world_size=WORLD, init_method=f"file://{init_file}"
    )
    try:
        x, y = _data()

        def mine(t: torch.Tensor) -> torch.Tensor:  # this rank's contiguous shard
            rows = shard_range(len(t), rank, WORLD)
            return t[rows.start : rows.stop]

        found = {
            "leave_one_out": sharded_retrieval_metrics(mine(x), mine(y), ks=KS),
            "gallery": sharded_retrieval_metrics(
                mine(x[150:]),
                mine(y[150:]),
                references=mine(x[:150]),
                reference_labels=mine(y[:150]),
                metric="cosine",
                ks=KS,
            ),
            "evaluate_embeddings": evaluate_embeddings(
                mine(x), mine(y), ks=KS, sharded=True, verification=False, n_pairs=50
            ),
        }
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(found))
    finally:
        tdist.destroy_distributed()


def _single_process() -> dict:
    x, y = _data()
    return {
        "leave_one_out": retrieval_metrics(x, y, ks=KS),
        "gallery": retrieval_metrics(
            x[150:], y[150:], references=x[:150], reference_labels=y[:150], metric="cosine", ks=KS
        ),
        "evaluate_embeddings": evaluate_embeddings(x, y, ks=KS, verification=False, n_pairs=50),
    }


def _assert_equal_to_single_process(out: Path) -> None:
    expected = json.loads(json.dumps(_single_process()))  # the same float → JSON round trip
    for rank in range(WORLD):
        found = json.loads((out / f"rank{rank}.json").read_text())
        assert found == expected, rank  # exactly equal, on every rank
    assert expected["leave_one_out"]["n_lone_queries"] == 1


def test_two_spawned_gloo_ranks_equal_one_process(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    _assert_equal_to_single_process(tmp_path)


def test_without_a_process_group_it_is_retrieval_metrics() -> None:
    x, y = _data()
    assert sharded_retrieval_metrics(x, y, ks=KS) == retrieval_metrics(x, y, ks=KS)


def test_shard_range_covers_every_row_once() -> None:
    for n in (0, 1, 7, 100):
        for world in (1, 2, 3, 8):
            rows = [i for r in range(world) for i in shard_range(n, r, world)]
            assert rows == list(range(n))
    with pytest.raises(ValueError, match="rank must lie"):
        shard_range(5, 2, 2)


_TORCHRUN_SCRIPT = """
import json, sys
import torch
sys.path.insert(0, {tests!r})
from test_evaluate_sharded import _data, KS, N
from tripletlab import distributed as tdist
from tripletlab.evaluate.sharded import shard_range, sharded_retrieval_metrics
torch.set_num_threads(1)
tdist.init_distributed("gloo", timeout_s=120)
x, y = _data()
rows = shard_range(N)
found = sharded_retrieval_metrics(x[rows.start:rows.stop], y[rows.start:rows.stop], ks=KS)
with open({out!r} + f"/rank{{tdist.get_rank()}}.json", "w") as f:
    json.dump({{"leave_one_out": found}}, f)
tdist.destroy_distributed()
"""


@pytest.mark.slow
def test_torchrun_two_ranks_equal_one_process(tmp_path: Path) -> None:
    script = tmp_path / "evaluate_sharded.py"
    tests = str(Path(__file__).parent)
    script.write_text(_TORCHRUN_SCRIPT.format(tests=tests, out=str(tmp_path)))
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", f"--nproc_per_node={WORLD}", str(script)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    x, y = _data()
    expected = json.loads(json.dumps(retrieval_metrics(x, y, ks=KS)))
    for rank in range(WORLD):
        found = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert found["leave_one_out"] == expected
