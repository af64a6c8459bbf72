"""`tripletlab train/evaluate` with field layouts: train on a layout's train split, evaluate
with its own protocol, with and without re-ranking / query expansion, and write the report."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from layout_builders import build_cub, build_lfw, build_market1501
from tripletlab.cli import main

CUB_CLASSES = (1, 2, 3, 101, 102, 103)
PER_CLASS = 10


def _invoke(*args: object) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _fails(*args: object) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1
    return result.output


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("layouts")
    cub = build_cub(root / "cub", classes=CUB_CLASSES, per_class=PER_CLASS)
    run = root / "run"
    _invoke(
        "train",
        "--dataset",
        f"cub200:{cub}",
        "--epochs",
        1,
        "--embedding-dim",
        8,
        "--out",
        run,
        "--seed",
        0,
    )
    return {
        "run": run,
        "cub": cub,
        "market": build_market1501(root / "market"),
        "lfw": build_lfw(root / "lfw"),
    }


def test_training_on_a_layout_uses_its_train_classes_only(layouts) -> None:
    config = json.loads((layouts["run"] / "config.json").read_text())
    assert config["data"]["dataset"].startswith("cub200:")
    from tripletlab.pipeline.layouts import layout_training_set

    train = layout_training_set(f"cub200:{layouts['cub']}")
    assert len(train.labels) == 3 * PER_CLASS  # classes 1-3 of CUB's 1-100 train half
    assert sorted(set(train.labels.tolist())) == [0, 1, 2]


def test_evaluate_defaults_to_the_run_layouts_own_protocol(layouts) -> None:
    out = json.loads(_invoke("evaluate", layouts["run"], "--json", "--no-report"))
    assert out["protocol"] == "self"
    assert out["n_query"] == out["n_gallery"] == 3 * PER_CLASS  # the test classes 101-103
    assert set(out["variants"]) == {"plain"}
    assert "recall_at_8" in out["variants"]["plain"]


def test_reid_protocol_with_rerank_and_qe_matches_the_library(layouts) -> None:
    from tripletlab.data.layouts import load_layout
    from tripletlab.evaluate.query_expansion import expand_queries
    from tripletlab.evaluate.reid import reid_metrics
    from tripletlab.pipeline.layouts import embed_split
    from tripletlab.pipeline.trained import TrainedModel

    spec = f"market1501:{layouts['market']}"
    text = _invoke(
        "evaluate",
        layouts["run"],
        "--dataset",
        spec,
        "--rerank",
        "--k1",
        3,
        "--k2",
        2,
        "--qe",
        "alpha-qe",
        "--qe-n",
        2,
        "--json",
    )
    out = json.loads(text)
    assert out["protocol"] == "reid" and (out["n_query"], out["n_gallery"]) == (3, 7)
    assert list(out["variants"]) == ["plain", "re-ranked", "alpha-qe"]
    trained = TrainedModel.load(layouts["run"])
    layout = load_layout(spec)
    q, g = layout.split("query"), layout.split("gallery")
    qe = embed_split(trained.embed, q, trained.in_shape)
    ge = embed_split(trained.embed, g, trained.in_shape)
    cams = {"query_cameras": q.cameras, "gallery_cameras": g.cameras}
    plain = reid_metrics(qe, q.labels, ge, g.labels, metric=trained.metric, **cams)
    assert out["variants"]["plain"]["map"] == pytest.approx(plain["map"])
    assert out["variants"]["plain"]["n_queries_without_match"] == 1  # query 2: own camera only
    expanded = expand_queries(qe, ge, n=2, alpha=3.0)
    qe_direct = reid_metrics(expanded, q.labels, ge, g.labels, metric="cosine", **cams)
    assert out["variants"]["alpha-qe"]["minp"] == pytest.approx(qe_direct["minp"])
    report = Path(out["report"])
    assert report.name == "report.md" and "| re-ranked |" in report.read_text()
    assert (report.parent / "retrieval_grid.png").stat().st_size > 0
    assert (report.parent / "cmc.png").exists()


def test_the_report_html_is_written_next_to_the_markdown(layouts) -> None:
    pytest.importorskip("markdown_it")
    out = json.loads(_invoke("evaluate", layouts["run"], "--json"))
    html = Path(out["report"]).with_suffix(".html")
    assert "data:image/png;base64," in html.read_text()
    assert "Worst" in Path(out["report"]).read_text()  # the per-class table of CUB


def test_lfw_gives_ten_fold_verification_and_refuses_rerank(layouts) -> None:
    spec = f"lfw:{layouts['lfw']}"
    out = json.loads(_invoke("evaluate", layouts["run"], "--dataset", spec, "--json"))
    assert out["protocol"] == "verification"
    assert 0.0 <= out["verification"]["accuracy_mean"] <= 1.0
    assert len(out["verification"]["folds"]) == 2
    assert "re-ranking" in _fails("evaluate", layouts["run"], "--dataset", spec, "--rerank")


def test_query_and_gallery_npz_with_cameras_use_the_reid_protocol(layouts, tmp_path) -> None:
    from tripletlab.pipeline.trained import TrainedModel

    shape = TrainedModel.load(layouts["run"]).in_shape
    rng = np.random.default_rng(0)
    x = rng.random((6, *shape), dtype=np.float32)
    labels, cams = np.array([1, 2, 1, 2, 1, 2]), np.array([1, 1, 2, 2, 3, 3])
    np.savez(tmp_path / "q.npz", x=x[:2], labels=labels[:2], cameras=cams[:2])
    np.savez(tmp_path / "g.npz", x=x[2:], labels=labels[2:], cameras=cams[2:])
    out = json.loads(
        _invoke(
            "evaluate",
            layouts["run"],
            "--query",
            tmp_path / "q.npz",
            "--gallery",
            tmp_path / "g.npz",
            "--json",
            "--no-report",
        )
    )
    assert out["protocol"] == "reid" and (out["n_query"], out["n_gallery"]) == (2, 4)
    assert "map" in out["variants"]["plain"]
    _fails("evaluate", layouts["run"], "--query", tmp_path / "q.npz")


def test_plain_evaluation_takes_the_knn_flags(layouts) -> None:
    folder = layouts["cub"] / "CUB_200_2011" / "images"  # an image folder: not a layout
    exact = json.loads(_invoke("evaluate", layouts["run"], "--dataset", folder, "--json"))
    chunked = json.loads(
        _invoke(
            "evaluate",
            layouts["run"],
            "--dataset",
            folder,
            "--exact",
            "--chunk-memory",
            1,
            "--knn-threads",
            1,
            "--json",
        )
    )
    assert chunked["metrics"]["map_at_r"] == pytest.approx(exact["metrics"]["map_at_r"])
    assert "approximate" in _fails(
        "evaluate", layouts["run"], "--dataset", folder, "--exact", "--approximate", "ivf"
    )
    assert "full exact rankings" in _fails("evaluate", layouts["run"], "--approximate", "hnsw")
    for flags in (["--sharded"], ["--knn-threads", 1]):  # refused, not ignored
        assert "full exact rankings" in _fails("evaluate", layouts["run"], *flags)
    assert "applies to --approximate ivf" in _fails("evaluate", layouts["run"], "--nprobe", 4)
    assert "--rerank" in _fails("evaluate", layouts["run"], "--dataset", folder, "--rerank")


def test_compare_writes_one_table_of_the_runs(layouts, tmp_path) -> None:
    import shutil

    other = tmp_path / "again"
    shutil.copytree(layouts["run"], other)
    text = _invoke("compare", layouts["run"], other, "-o", tmp_path / "cmp")
    assert "| run |" in text and "again" in text
    assert (tmp_path / "cmp" / "compare.md").exists()
    assert (tmp_path / "cmp" / "compare_curves.png").exists()
    assert "two run" in _fails("compare", layouts["run"], "-o", tmp_path / "cmp2")


def test_search_names_files_and_says_unknown_beyond_the_far_threshold(layouts, tmp_path) -> None:
    from tripletlab.evaluate.gallery import GalleryIndex

    index_path = tmp_path / "cub.index"
    text = _invoke(
        "index",
        layouts["run"],
        "--data",
        f"cub200:{layouts['cub']}",
        "-o",
        index_path,
        "--target-far",
        0.0,
    )
    assert "identification threshold" in text and "at FAR 0" in text
    flat = tmp_path / "probes"  # a flat folder: no identity sub-folders
    flat.mkdir()
    images = sorted((layouts["cub"] / "CUB_200_2011" / "images").rglob("*_0000_10*.jpg"))
    for image in images:
        (flat / image.name).write_bytes(image.read_bytes())
    out = json.loads(_invoke("search", index_path, flat, "--top-k", 2, "--json"))
    assert [r["query"] for r in out] == [str(flat / i.name) for i in images]
    for result, image in zip(out, images, strict=True):
        assert result["known"] and result["target_far"] == 0.0
        assert result["identity"] == image.parent.name  # the same picture is in the gallery
        assert Path(result["matches"][0]["id"]).parent.name == image.parent.name
    index = GalleryIndex.load(index_path)
    index.info["identification"]["threshold"] = -1.0  # nothing is that close: all unknown
    index.save(index_path)
    out = json.loads(_invoke("search", index_path, images[0], "--json"))
    assert out[0]["identity"] == "unknown" and not out[0]["known"]
    assert "-> unknown" in _invoke("search", index_path, images[0])


def test_verify_says_the_far_of_its_threshold(layouts, tmp_path) -> None:
    images = sorted((layouts["cub"] / "CUB_200_2011" / "images").rglob("*.jpg"))
    np.save(tmp_path / "one.npy", np.zeros((1, 3, 8, 8), dtype=np.float32))
    out = json.loads(_invoke("verify", layouts["run"], images[0], images[1], "--json"))
    assert out[0]["threshold_source"] == "evaluation" and 0.0 <= out[0]["far"] <= 1.0
    assert out[0]["a"] == str(images[0])
    chosen = json.loads(
        _invoke(
            "verify", layouts["run"], images[0], tmp_path / "one.npy", "--target-far", 0.0, "--json"
        )
    )
    assert chosen[0]["threshold_source"] == "target_far" and chosen[0]["far"] == 0.0
    assert "set at FAR" in _invoke("verify", layouts["run"], images[0], images[1])


def test_the_run_report_has_the_grid_worst_classes_and_html(layouts) -> None:
    run = layouts["run"]
    text = (run / "report.md").read_text()
    assert "![retrieval grid](retrieval_grid.png)" in text and "**Worst" in text
    assert (run / "retrieval_grid.png").stat().st_size > 0
    if importlib.util.find_spec("markdown_it") is not None:
        assert "data:image/png;base64," in (run / "report.html").read_text()


def test_without_markdown_it_the_html_is_skipped_with_a_note(tmp_path, monkeypatch) -> None:
    import torch

    from tripletlab.pipeline import run_report
    from tripletlab.report import html

    def unavailable() -> None:
        raise html.HtmlUnavailable("no markdown-it-py")

    monkeypatch.setattr(html, "_markdown_parser", unavailable)
    report = tmp_path / "report.md"
    report.write_text("# run\n")
    x = torch.tensor([[0.0], [0.1], [1.0], [1.1]])
    raw = np.zeros((4, 1, 2, 2), dtype=np.float32)
    out = run_report.extend_run_report(
        report, x, np.array([0, 0, 1, 1]), raw, ["a", "b"], "euclidean"
    )
    assert out is None and not (tmp_path / "report.html").exists()
    assert run_report.HTML_SKIPPED in report.read_text()
    assert (tmp_path / "retrieval_grid.png").exists()


def test_embed_takes_a_flat_folder_and_names_each_row(layouts, tmp_path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    found = (layouts["cub"] / "CUB_200_2011" / "images").rglob("*_0001_*.jpg")
    images = sorted(found, key=lambda p: p.name)  # a folder's rows come in file-name order
    for image in images:
        (flat / image.name).write_bytes(image.read_bytes())
    text = _invoke("embed", layouts["run"], flat, "-o", tmp_path / "e.npy")
    assert "e.ids.txt" in text
    embeddings = np.load(tmp_path / "e.npy")
    ids = (tmp_path / "e.ids.txt").read_text().splitlines()
    assert embeddings.shape == (len(images), 8)
    assert ids == [str(flat / i.name) for i in images]
    single = _invoke("embed", layouts["run"], images[0], "-o", tmp_path / "one.npy")
    assert "1 × 8" in single
    assert np.allclose(np.load(tmp_path / "one.npy")[0], embeddings[0], atol=1e-6)


def test_a_manifest_csv_trains_and_evaluates_by_its_roles(layouts, tmp_path) -> None:
    from layout_builders import write_image
    from tripletlab.pipeline.layouts import layout_training_set

    rows = ["path,label,camera,split"]
    for i, (label, camera, split) in enumerate(
        [
            ("cat", 1, "train"),
            ("cat", 2, "train"),
            ("dog", 1, "train"),
            ("dog", 2, "train"),
            ("cat", 1, "query"),
            ("dog", 2, "query"),
            ("cat", 2, "gallery"),
            ("dog", 1, "gallery"),
            ("cat", 1, "gallery"),
        ]
    ):
        write_image(tmp_path / "img" / f"{i}.jpg", {"cat": 1, "dog": 2}[label])
        rows.append(f"img/{i}.jpg,{label},{camera},{split}")
    manifest = tmp_path / "m.csv"
    manifest.write_text("\n".join(rows) + "\n")
    train = layout_training_set(str(manifest))
    assert train.features.shape == (4, 3, 8, 8) and train.class_names == ["cat", "dog"]
    out = json.loads(
        _invoke("evaluate", layouts["run"], "--dataset", manifest, "--json", "--no-report")
    )
    assert out["protocol"] == "reid" and (out["n_query"], out["n_gallery"]) == (2, 3)
    assert out["variants"]["plain"]["rank_1"] == 1.0  # one colour per label: exact matches


@pytest.mark.parametrize(
    ("builder", "name", "protocol", "recall_key"),
    [
        ("build_inshop", "inshop", "query_gallery", "recall_at_50"),
        ("build_sop", "sop", "self", "recall_at_1000"),
        ("build_cars", "cars196", "self", "recall_at_8"),
    ],
)
def test_dml_layouts_report_their_own_recall_ks(
    layouts, tmp_path, builder, name, protocol, recall_key
) -> None:
    import layout_builders

    root = getattr(layout_builders, builder)(tmp_path / name)
    spec = f"{name}:{root}"
    out = json.loads(
        _invoke(
            "evaluate",
            layouts["run"],
            "--dataset",
            spec,
            "--qe",
            "aqe",
            "--qe-n",
            1,
            "--json",
            "--no-report",
        )
    )
    assert out["protocol"] == protocol
    assert recall_key in out["variants"]["plain"] and recall_key in out["variants"]["aqe"]


def test_the_faiss_backend_gives_the_exact_numbers(layouts) -> None:
    pytest.importorskip("faiss")
    folder = layouts["cub"] / "CUB_200_2011" / "images"
    torch_out = json.loads(_invoke("evaluate", layouts["run"], "--dataset", folder, "--json"))
    faiss_out = json.loads(
        _invoke("evaluate", layouts["run"], "--dataset", folder, "--backend", "faiss", "--json")
    )
    for key in ("precision_at_1", "map_at_r", "r_precision"):
        assert faiss_out["metrics"][key] == pytest.approx(torch_out["metrics"][key], abs=1e-6)
