"""Assemble a protocol report — Markdown and the same content as a self-contained HTML page.

Sections are Markdown strings built by the helpers below from the protocol results
(:mod:`tripletlab.evaluate.reid`, ``dml_protocol``, ``face_verification``, ``open_set``) and
figures written next to the report; :func:`write_protocol_report` joins them and renders the
HTML with every figure embedded.

Example:
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> section = reid_section({"plain": {"rank_1": 0.5, "map": 0.4, "minp": 0.2,
    ...                                   "cmc": [0.5, 0.7], "n_queries": 2}}, folder)
    >>> md, html = write_protocol_report(folder, "demo", [("Re-identification", section)])
    >>> md.name, html is None or html.name
    ('report.md', 'report.html')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tripletlab.report.html import HtmlUnavailable, write_html
from tripletlab.report.protocol_tables import (
    comparison_table,
    fold_table,
    per_class_markdown,
    plot_cmc,
)

REID_KEYS = ("rank_1", "rank_5", "rank_10", "map", "minp")
DML_KEYS = ("precision_at_1", "r_precision", "map_at_r")


def reid_section(
    results: Mapping[str, Mapping[str, Any]], figure_dir: str | Path, name: str = "cmc.png"
) -> str:
    """With/without table of CMC rank-k, mAP and mINP, and the overlaid CMC curves."""
    keys = [k for k in REID_KEYS if any(k in r for r in results.values())]
    figure = plot_cmc(
        {n: r["cmc"] for n, r in results.items() if "cmc" in r}, Path(figure_dir) / name
    )
    counts = ", ".join(
        f"{n}: {r.get('n_queries', '–')} queries ({r.get('n_queries_without_match', 0)} without a valid match)"
        for n, r in results.items()
    )
    return (
        f"{comparison_table(results, keys)}\n\n"
        "Gallery images of the query's identity taken by the query's camera are excluded, "
        f"junk (−1) is ignored, distractors count as negatives. {counts}.\n\n"
        f"![CMC curves]({figure.name})\n"
    )


def dml_section(
    results: Mapping[str, Mapping[str, Any]],
    per_class: Sequence[Mapping[str, Any]] | None = None,
    worst: int = 10,
) -> str:
    """With/without table of P@1, R-precision, MAP@R and Recall@k; the worst classes."""
    first = next(iter(results.values()), {})
    keys = list(DML_KEYS) + [k for k in first if k.startswith("recall_at_")]
    text = comparison_table(results, keys) + "\n"
    if per_class:
        text += (
            f"\n**Worst {min(worst, len(per_class))} classes** (by MAP@R) and the class their "
            f"queries most often retrieve first instead:\n\n{per_class_markdown(per_class, worst)}\n"
        )
    return text


def verification_section(result: Mapping[str, Any]) -> str:
    """The fold table and the TAR@FAR lines of ``ten_fold_verification``."""
    lines = [fold_table(result), ""]
    for key, value in result.items():
        if key.startswith("tar_at_far_") and key.endswith("_mean"):
            far = key.removeprefix("tar_at_far_").removesuffix("_mean")
            std = result.get(f"tar_at_far_{far}_std", float("nan"))
            achieved = result.get(f"far_at_far_{far}_mean", float("nan"))
            pooled = result.get(f"tar_at_far_{far}_pooled", float("nan"))
            lines.append(
                f"- TAR @ FAR = {far}: {value:.4f} ± {std:.4f} over folds (achieved FAR on the "
                f"test folds {achieved:.4f}); pooled ROC: {pooled:.4f}"
            )
    return "\n".join(lines) + "\n"


def identification_section(result: Mapping[str, Any]) -> str:
    """Closed-set rank-1 and DIR @ FAR lines of ``open_set_identification``."""
    lines = [
        f"- mated probes {result['n_mated']}, non-mated {result['n_non_mated']} "
        f"(impostor scores: {result['impostors'].replace('_', ' ')}); rank-1 {result['rank_1']:.4f}"
    ]
    for key, value in result.items():
        if key.startswith("dir_at_far_"):
            far = key.removeprefix("dir_at_far_")
            lines.append(
                f"- DIR @ FAR = {far}: {value:.4f} (threshold {result[f'threshold_at_far_{far}']:.4g}, "
                f"achieved FAR {result[f'achieved_far_{far}']:.4f})"
            )
    return "\n".join(lines) + "\n"


def write_protocol_report(
    out_dir: str | Path,
    title: str,
    sections: Sequence[tuple[str, str]],
    *,
    intro: str = "",
) -> tuple[Path, Path | None]:
    """Write ``report.md`` and (when markdown-it-py is installed) ``report.html``.

    Args:
        out_dir: the folder (figures referenced by the sections must be in it).
        title: the page's heading.
        sections: (heading, Markdown body) pairs.
        intro: a paragraph under the title.

    Returns:
        (Markdown path, HTML path or None).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = [f"# {title}\n"]
    if intro:
        parts.append(intro.strip() + "\n")
    parts += [f"## {heading}\n\n{body.strip()}\n" for heading, body in sections]
    markdown_path = out / "report.md"
    markdown_path.write_text("\n".join(parts), encoding="utf-8")
    try:
        return markdown_path, write_html(markdown_path)
    except HtmlUnavailable:  # markdown-it-py absent: the Markdown is the report
        return markdown_path, None
