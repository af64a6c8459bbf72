"""`tripletlab evaluate` with the faiss parameters, the exact-vs-approximate gap, and sharded
over torch.distributed ranks: the tiny run's test split (tests/tiny_run.py), in-process
(CliRunner), two spawned gloo ranks, and (slow) a real ``torchrun``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch.multiprocessing as mp
from click.testing import CliRunner

from tiny_run import tiny_cli_args
from tripletlab.cli import main

pytest.importorskip("faiss")

WORLD = 2


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny")
    result = CliRunner().invoke(main, tiny_cli_args(folder), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return folder / "run"


def _evaluate(run: Path, *flags: object) -> str:
    result = CliRunner().invoke(main, ["evaluate", str(run), *map(str, flags)])
    assert result.exit_code == 0, result.output
    return result.output


def _refused(run: Path, *flags: object) -> str:
    result = CliRunner().invoke(main, ["evaluate", str(run), *map(str, flags)])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    return result.output


class _Recorder:
    """Wraps FaissKNN to record the options each backend is built with."""

    def __init__(self, original: Any) -> None:
        self.original = original
        self.built: list[dict[str, Any]] = []

    def __call__(self, index_type: str, **options: Any) -> Any:
        self.built.append({"index_type": index_type, **options})
        return self.original(index_type, **options)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    import tripletlab.evaluate.knn_faiss as knn_faiss

    recorder = _Recorder(knn_faiss.FaissKNN)
    monkeypatch.setattr(knn_faiss, "FaissKNN", recorder)
    return recorder.built


def test_an_exhaustive_ivf_search_has_zero_gap_and_the_exact_metrics(run, recorded) -> None:
    exact = json.loads(_evaluate(run, "--json"))
    flags = ("--approximate", "ivf", "--nlist", 1, "--nprobe", 1, "--json")
    ivf = json.loads(_evaluate(run, *flags))
    assert recorded == [{"index_type": "ivf", "nlist": 1, "nprobe": 1, "threads": None}]
    assert ivf["search"] == {"method": "ivf", "nlist": 1, "nprobe": 1}
    assert ivf["metrics"]["approximation_gap_queries"] == exact["n"]  # all: fewer than 5,000
    for key in ("precision_at_1", "r_precision", "map_at_r", "knn_accuracy"):
        assert ivf["metrics"][f"{key}_approximation_gap"] == 0.0  # one cell, all searched
        assert ivf["metrics"][key] == pytest.approx(exact["metrics"][key], abs=1e-12)
    assert exact["search"] == {"method": "exact"}
    assert "approximation_gap_queries" not in exact["metrics"]


def test_hnsw_parameters_reach_faiss_and_the_gap_is_printed(run, recorded) -> None:
    flags = ("--approximate", "hnsw", "--hnsw-m", 4, "--ef-construction", 8)
    text = _evaluate(run, *flags, "--ef-search", 16, "--gap-queries", 5)
    assert recorded == [
        {"index_type": "hnsw", "hnsw_m": 4, "ef_construction": 8, "ef_search": 16, "threads": None}
    ]
    header = next(line for line in text.splitlines() if "metric" in line)
    assert header.split() == ["metric", "trained", "baseline", "gap"]
    p_at_1 = next(line for line in text.splitlines() if "precision_at_1" in line).split()
    assert p_at_1[3][0] in "+-"  # a signed gap next to the approximate value
    assert "gap: approximate − exact on 5 sampled queries" in text
    assert "trained: hnsw search (hnsw_m=4, ef_construction=8, ef_search=16)" in text


def test_gap_queries_zero_skips_the_gap(run) -> None:
    found = json.loads(_evaluate(run, "--approximate", "hnsw", "--gap-queries", 0, "--json"))
    assert not any(key.endswith("_approximation_gap") for key in found["metrics"])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--nlist", 4), "--nlist applies to --approximate ivf only"),
        (("--approximate", "hnsw", "--nprobe", 4), "--nprobe applies to --approximate ivf"),
        (("--approximate", "ivf", "--ef-search", 4), "--ef-search applies to --approximate hnsw"),
        (("--backend", "faiss", "--hnsw-m", 4), "--hnsw-m applies to --approximate hnsw"),
        (("--gap-queries", 10), "--gap-queries measures an approximate search"),
        (("--sharded",), "--sharded splits the queries over torchrun's processes"),
    ],
)
def test_a_flag_that_does_not_apply_is_refused(run, flags, message) -> None:
    assert message in _refused(run, *flags)


def test_under_torchrun_sharded_is_asked_for_and_exact(run, monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert "add --sharded" in _refused(run)
    assert "exact: drop --approximate" in _refused(run, "--sharded", "--approximate", "ivf")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rank(rank: int, run: str, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    result = CliRunner().invoke(main, ["evaluate", run, "--sharded", "--json"])
    Path(out, f"rank{rank}.txt").write_text(f"{result.exit_code}\n{result.output}")


def _single(run: Path) -> dict[str, Any]:
    found = json.loads(_evaluate(run, "--json"))
    found["search"]["sharded"] = True
    return found


def test_two_spawned_ranks_print_once_the_single_process_result(run, tmp_path) -> None:
    mp.spawn(_rank, args=(str(run), _free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    outputs = [(tmp_path / f"rank{r}.txt").read_text().split("\n", 1) for r in range(WORLD)]
    assert [code for code, _ in outputs] == ["0", "0"], outputs
    assert outputs[1][1] == ""  # rank 1 prints nothing
    assert json.loads(outputs[0][1]) == _single(run)


@pytest.mark.slow
def test_torchrun_two_ranks_print_once_the_single_process_result(run) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc-per-node={WORLD}", "-m", "tripletlab.cli"]
    cmd += ["evaluate", str(run), "--sharded", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == _single(run)  # one JSON document: rank 0 alone printed
