"""`tripletlab index / search / verify` end to end on a small trained digits run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tripletlab.cli import main
from tripletlab.evaluate.gallery import GalleryIndex


@pytest.fixture(scope="module")
def run_and_gallery(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tripletlab.data import load_dataset
    from tripletlab.pipeline.config import load_config
    from tripletlab.pipeline.training import run_training

    root = tmp_path_factory.mktemp("recognition")
    cfg = load_config(
        None,
        {
            "train.epochs": 1,
            "out": str(root / "run"),
            "report.enabled": False,
            "train.progress": False,
            "data.max_samples": 300,
        },
    )
    run_training(cfg)
    digits = load_dataset("digits")
    x, y = digits.features.numpy(), digits.labels.numpy()
    gallery = root / "gallery.npz"
    np.savez(gallery, features=x[:500], labels=y[:500])
    queries = root / "queries.npy"
    np.save(queries, x[500:503])
    single = root / "one.npy"
    np.save(single, x[503])  # one sample without its batch axis
    image = root / "digit.png"
    from PIL import Image

    Image.fromarray((x[504, 0] * 255).astype(np.uint8), mode="L").save(image)
    return {
        "root": root,
        "run": root / "run",
        "gallery": gallery,
        "queries": queries,
        "single": single,
        "image": image,
        "x": x,
        "y": y,
    }


def _invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_index_then_search_finds_the_identities_the_embeddings_say(run_and_gallery) -> None:
    r = run_and_gallery
    index_path = r["root"] / "digits.idx"
    out = _invoke("index", r["run"], "--data", r["gallery"], "-o", index_path)
    assert out.exit_code == 0, out.output
    assert "indexed 500 samples of 10 identities" in out.output
    index = GalleryIndex.load(index_path)
    threshold = json.loads((r["run"] / "metrics.json").read_text())["test"]
    assert index.threshold == pytest.approx(threshold["verification_threshold"])
    assert index.metric == "sqeuclidean" and len(index.info["checkpoint_sha256"]) == 64

    out = _invoke(
        "search", index_path, r["queries"], r["single"], r["image"], "--top-k", 3, "--json"
    )
    assert out.exit_code == 0, out.output
    results = json.loads(out.output)
    assert [q["query"] for q in results][:3] == [f"{r['queries']}#{i}" for i in range(3)]
    assert len(results) == 5  # 3 + 1 + 1 query samples
    # the answer equals a direct search with the run's embeddings
    from tripletlab.pipeline.trained import embed_run

    emb = torch.from_numpy(embed_run(r["run"], r["x"][500:504]))
    want = index.search(emb, top_k=3)
    for q in range(4):
        got = results[q]["matches"]
        assert [m["label"] for m in got] == want.labels[q].tolist()
        assert [m["distance"] for m in got] == pytest.approx(want.distances[q].tolist(), abs=1e-5)
        assert got[0]["id"] == index.ids[int(want.indices[q, 0])]
        assert [m["rank"] for m in got] == [1, 2, 3]
    # the PNG made from sample 504 is found as the same digit as the array itself
    direct = index.search(torch.from_numpy(embed_run(r["run"], r["x"][504:505])), 1)
    assert results[4]["matches"][0]["label"] == int(direct.labels[0, 0])

    text = _invoke("search", index_path, r["single"])
    assert text.exit_code == 0 and " 1. " in text.output and "distance" in text.output


def test_verify_decides_at_the_evaluation_threshold(run_and_gallery) -> None:
    r = run_and_gallery
    pair_a, pair_b = r["root"] / "a.npy", r["root"] / "b.npy"
    np.save(pair_a, r["x"][600:606])
    np.save(pair_b, r["x"][606:612])
    out = _invoke("verify", r["run"], pair_a, pair_b, "--json")
    assert out.exit_code == 0, out.output
    decisions = json.loads(out.output)
    threshold = json.loads((r["run"] / "metrics.json").read_text())["test"]
    from tripletlab.pipeline.trained import embed_run

    ea = torch.from_numpy(embed_run(r["run"], r["x"][600:606]))
    eb = torch.from_numpy(embed_run(r["run"], r["x"][606:612]))
    dist = ((ea - eb) ** 2).sum(1)
    assert [d["distance"] for d in decisions] == pytest.approx(dist.tolist(), abs=1e-5)
    tau = threshold["verification_threshold"]
    assert [d["same"] for d in decisions] == (dist <= tau).tolist()
    assert all(d["threshold"] == pytest.approx(tau) for d in decisions)
    out = _invoke("verify", r["run"], r["single"], r["single"])
    assert out.exit_code == 0 and out.output.startswith("same identity (distance 0.0000")
    out = _invoke("verify", r["run"], r["single"], r["single"], "--threshold", "-1")
    assert out.exit_code == 2 and "threshold" in out.output


def test_user_errors_are_one_line_and_exit_2(run_and_gallery, tmp_path) -> None:
    r = run_and_gallery
    bogus = tmp_path / "bogus.idx"
    torch.save({"weights": torch.ones(1)}, bogus)
    out = CliRunner().invoke(main, ["search", str(bogus), str(r["single"])])
    assert out.exit_code == 2 and "not a tripletlab gallery" in out.output
    assert "Traceback" not in out.output
    # a run whose checkpoint changed after indexing is refused
    index_path = tmp_path / "stale.idx"
    _invoke("index", r["run"], "--data", r["gallery"], "-o", index_path)
    index = GalleryIndex.load(index_path)
    index.info["checkpoint_sha256"] = "0" * 64
    index.save(index_path)
    out = CliRunner().invoke(main, ["search", str(index_path), str(r["single"])])
    assert out.exit_code == 2 and "rebuild the index" in out.output
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 5), dtype=np.float32))
    out = CliRunner().invoke(main, ["verify", str(r["run"]), str(wrong), str(wrong)])
    assert out.exit_code == 2 and "error:" in out.output


@pytest.mark.bench
def test_search_with_the_faiss_backend_gives_the_same_answer(run_and_gallery) -> None:
    pytest.importorskip("faiss")
    r = run_and_gallery
    index_path = r["root"] / "faiss.idx"
    _invoke("index", r["run"], "--data", r["gallery"], "-o", index_path)
    torch_out = _invoke("search", index_path, r["queries"], "--top-k", 4, "--json")
    faiss_out = _invoke(
        "search", index_path, r["queries"], "--top-k", 4, "--json", "--backend", "faiss-flat"
    )
    a, b = json.loads(torch_out.output), json.loads(faiss_out.output)
    assert [[m["id"] for m in q["matches"]] for q in a] == [
        [m["id"] for m in q["matches"]] for q in b
    ]
