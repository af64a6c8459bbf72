"""Report building blocks: retrieval grid, protocol tables, HTML page (checked in headless
Chromium), run comparison."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from layout_builders import build_market1501
from tripletlab.data.layouts import load_layout
from tripletlab.errors import DataError
from tripletlab.evaluate.dml_protocol import dml_metrics, dml_ranks, per_class_table
from tripletlab.evaluate.face_verification import ten_fold_verification
from tripletlab.evaluate.ranking import distance_blocks, rank_blocks
from tripletlab.evaluate.reid import reid_metrics, reid_metrics_from_blocks
from tripletlab.evaluate.rerank import k_reciprocal_blocks
from tripletlab.report.compare import compare_runs, read_run
from tripletlab.report.html import render_html, write_html
from tripletlab.report.protocol_report import (
    dml_section,
    reid_section,
    verification_section,
    write_protocol_report,
)
from tripletlab.report.protocol_tables import comparison_table, fold_table, per_class_markdown
from tripletlab.report.retrieval_grid import plot_retrieval_grid, sample_queries

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def _market_ranks(tmp_path):
    layout = load_layout(f"market1501:{build_market1501(tmp_path / 'market')}")
    q, g = layout.split("query"), layout.split("gallery")
    rng = np.random.default_rng(0)
    qe, ge = torch.tensor(rng.normal(size=(len(q), 4))), torch.tensor(rng.normal(size=(len(g), 4)))
    ranked = rank_blocks(
        distance_blocks(qe, ge),
        q.labels,
        g.labels,
        query_cameras=q.cameras,
        gallery_cameras=g.cameras,
        junk_label=-1,
        top_k=4,
    )
    return q, g, qe, ge, ranked


def test_sample_queries_includes_failures_first():
    rel = np.array([[True], [False], [True], [False], [True], [True]])
    chosen = sample_queries(rel, None, 4, seed=1)
    assert len(chosen) == 4 and set(chosen[:2]) == {1, 3}
    only_right = sample_queries(np.array([[True], [True]]), None, 4)
    assert sorted(only_right.tolist()) == [0, 1]
    skipped = sample_queries(rel, np.array([False, True, True, False, True, True]), 6)
    assert 0 not in skipped and 3 not in skipped


def test_retrieval_grid_from_image_paths(tmp_path):
    q, g, _, _, ranked = _market_ranks(tmp_path)
    path = plot_retrieval_grid(
        ranked.top,
        ranked.top_relevant,
        q.labels,
        g.labels,
        tmp_path / "grid.png",
        query_images=q.paths,
        gallery_images=g.paths,
        answerable=ranked.answerable,
    )
    with Image.open(path) as image:
        assert image.width > 200 and image.height > 100


def test_retrieval_grid_from_arrays_and_stand_in_tiles(tmp_path):
    images = np.random.default_rng(0).random((5, 1, 28, 28))
    top = np.array([[1, 2, -1], [0, 3, 4]])
    rel = np.array([[True, False, False], [False, False, True]])
    labels = np.array([0, 0, 1, 2, 1])
    for name, source in (("arrays.png", images), ("tiles.png", None)):
        path = plot_retrieval_grid(
            top,
            rel,
            labels[:2],
            labels,
            tmp_path / name,
            query_images=source,
            gallery_images=source,
            class_names={0: "T-shirt/top", 1: "Trouser"},
        )
        assert path.stat().st_size > 1000


def test_tables_show_values_and_changes():
    table = comparison_table(
        {"plain": {"map": 0.5, "rank_1": 0.6}, "re-ranked": {"map": 0.7, "rank_1": 0.55}},
        ["rank_1", "map"],
    )
    assert "| re-ranked | 0.5500 (-0.0500) | 0.7000 (+0.2000) |" in table
    result = ten_fold_verification(
        np.array([0.1, 0.4, 0.3, 0.9, 0.2, 0.5, 0.6, 0.35]),
        np.array([1, 1, 0, 0, 1, 1, 0, 0], bool),
        np.repeat([0, 1], 4),
        fars=(0.5,),
    )
    folds = fold_table(result)
    assert "| 1 | 4 | 0.2750 | 0.7500 | 0.7500 |" in folds
    assert "0.7500 ± 0.0000" in folds
    assert "TAR @ FAR = 0.5: 1.0000 ± 0.0000" in verification_section(result)


def test_per_class_markdown_lists_the_worst_with_confusions():
    x = torch.tensor([[0.0], [0.1], [5.0], [5.05], [5.1], [5.15]])
    y = np.array([0, 0, 1, 2, 1, 2])
    rows = per_class_table(dml_ranks(x, y, top_k=1), y, y, class_names={1: "Coat", 2: "Shirt"})
    text = per_class_markdown(rows, worst=2)
    assert "| Coat | 2 | 0.0000 | " in text and "Shirt (2×)" in text
    assert "| 0 |" not in text  # the good class is not among the worst two


def test_html_embeds_images_and_refuses_missing_ones(tmp_path):
    Image.new("RGB", (4, 4), "red").save(tmp_path / "a.png")
    html = render_html("# T\n\n![a](a.png)\n\n<script>x</script>\n", base_dir=tmp_path)
    assert 'src="data:image/png;base64,' in html
    assert "a.png" not in html.split("<body>")[1].replace('alt="a"', "")
    assert "<script>" not in html  # raw HTML is escaped
    with pytest.raises(DataError, match=r"b\.png"):
        render_html("![b](b.png)", base_dir=tmp_path)


def _fake_run(folder: Path, p1: float, losses: list[float]) -> Path:
    folder.mkdir(parents=True)
    metrics = {"test": {"precision_at_1": p1, "map_at_r": p1 / 2, "n_queries": 10}, "epochs": 2}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    lines = [
        json.dumps({"epoch": i + 1, "loss": loss, "val_precision_at_1": p1 - 0.1 * (1 - i)})
        for i, loss in enumerate(losses)
    ]
    (folder / "epochs.jsonl").write_text("\n".join([*lines, '{"epoch": 3, "lo']) + "\n")
    return folder


def test_compare_runs_table_curves_and_html(tmp_path):
    a = _fake_run(tmp_path / "runs" / "margin-0.1", 0.6, [0.5, 0.3])
    b = _fake_run(tmp_path / "runs" / "margin-0.2", 0.7, [0.6, 0.2])
    result = compare_runs([a, b], tmp_path / "cmp")
    assert "| margin-0.2 | 0.7000 (+0.1000) | 0.3500 (+0.0500) |" in result.table
    assert result.figure_path.is_file() and result.html_path is not None
    assert "data:image/png;base64," in result.html_path.read_text()
    assert len(read_run(a)[1]) == 2  # the line cut short by a kill is skipped


def test_compare_runs_errors(tmp_path):
    a = _fake_run(tmp_path / "a", 0.6, [0.5])
    with pytest.raises(DataError, match="at least two"):
        compare_runs([a], tmp_path / "cmp")
    with pytest.raises(DataError, match=r"metrics\.json"):
        compare_runs([a, tmp_path / "missing"], tmp_path / "cmp")


def _full_report(tmp_path: Path) -> Path:
    """A report with every building block: grid from image files, CMC, tables, comparison."""
    q, g, qe, ge, ranked = _market_ranks(tmp_path)
    out = tmp_path / "report"
    out.mkdir()
    cams = {"query_cameras": q.cameras, "gallery_cameras": g.cameras}
    plain = reid_metrics(qe, q.labels, ge, g.labels, **cams)
    reranked = reid_metrics_from_blocks(
        k_reciprocal_blocks(qe, ge, k1=3, k2=2), q.labels, g.labels, **cams
    )
    plot_retrieval_grid(
        ranked.top,
        ranked.top_relevant,
        q.labels,
        g.labels,
        out / "grid.png",
        query_images=q.paths,
        gallery_images=g.paths,
        answerable=ranked.answerable,
    )
    x = torch.tensor(np.random.default_rng(1).normal(size=(12, 3)))
    y = np.repeat(np.arange(4), 3)
    dml = dml_section({"plain": dml_metrics(x, y)}, per_class_table(dml_ranks(x, y, top_k=1), y, y))
    compare_runs(
        [_fake_run(tmp_path / "r1", 0.5, [1, 0.5]), _fake_run(tmp_path / "r2", 0.6, [1, 0.4])],
        out,
    )
    sections = [
        ("Re-identification", reid_section({"plain": plain, "re-ranked": reranked}, out)),
        ("Retrieval grid", "![grid](grid.png)"),
        ("DML", dml),
        ("Runs", "![curves](compare_curves.png)"),
    ]
    _, html = write_protocol_report(out, "Protocol report", sections)
    assert html is not None
    return html


def test_protocol_report_markdown_and_html_have_the_same_figures(tmp_path):
    html_path = _full_report(tmp_path)
    markdown = (html_path.parent / "report.md").read_text()
    html = html_path.read_text()
    assert markdown.count("![") == html.count("<img ") == 3
    assert html.count('src="data:image/png;base64,') == 3
    assert "mINP" in html and "MAP@R" in html


@pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()), reason="headless Chromium not installed"
)
def test_html_report_loads_in_headless_chromium_without_errors(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    html_path = _full_report(tmp_path)
    profile = tempfile.mkdtemp(prefix="tl-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.get(html_path.as_uri())
        state = driver.execute_script("return document.readyState")
        widths = driver.execute_script(
            "return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)"
        )
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        title = driver.title
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    assert state == "complete"
    assert title == "Protocol report"
    assert len(widths) == 3 and all(w > 0 for w in widths), widths
    assert errors == []


def test_write_html_names_the_page_after_the_first_heading(tmp_path):
    (tmp_path / "r.md").write_text("# My run\n\ntext\n")
    page = write_html(tmp_path / "r.md")
    assert page.name == "r.html" and "<title>My run</title>" in page.read_text()
