"""The protocol report of an evaluation: tables with and without re-ranking / QE, CMC
curves, the retrieval grid, the worst classes, verification folds and open-set lines —
``report.md`` plus the self-contained ``report.html`` (skipped, with a note, without
markdown-it-py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tripletlab.pipeline.protocols import EvalSet, PostProcessing, variant_blocks

__all__ = ["write_run_protocol_report"]

#: Results per query drawn in the retrieval grid.
GRID_TOP_K = 8
#: Classes listed in the worst-classes table.
WORST_CLASSES = 10


def _ranked(protocol: str, q: EvalSet, g: EvalSet, metric: str) -> Any:
    from tripletlab.evaluate.ranking import rank_blocks

    self_protocol = protocol == "self"
    blocks = variant_blocks("plain", q, None if self_protocol else g, PostProcessing(), metric)
    return rank_blocks(
        blocks,
        q.labels,
        g.labels,
        query_cameras=q.cameras if protocol == "reid" else None,
        gallery_cameras=g.cameras if protocol == "reid" else None,
        exclude_self=self_protocol,
        junk_label=-1 if protocol == "reid" else None,
        top_k=GRID_TOP_K,
    )


def _grid(out_dir: Path, protocol: str, q: EvalSet, g: EvalSet, ranked: Any) -> str:
    from tripletlab.report.retrieval_grid import plot_retrieval_grid

    path = plot_retrieval_grid(
        ranked.top,
        ranked.top_relevant,
        q.labels,
        g.labels,
        out_dir / "retrieval_grid.png",
        query_images=q.paths,
        gallery_images=g.paths,
        answerable=ranked.answerable,
        class_names=g.class_names or None,
    )
    return f"![retrieval grid]({path.name})\n"


def write_run_protocol_report(
    out_dir: str | Path, result: dict[str, Any], q: EvalSet, g: EvalSet, metric: str
) -> Path:
    """Write the report of :func:`~tripletlab.pipeline.protocol_run.evaluate_protocol`'s
    ``result`` into ``out_dir``; returns the Markdown path."""
    from tripletlab.evaluate.dml_protocol import per_class_table
    from tripletlab.report import protocol_report as sections_of

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    protocol, sections = result["protocol"], []
    if protocol == "verification":
        sections.append(
            ("Verification (10 folds)", sections_of.verification_section(result["verification"]))
        )
    else:
        variants = result["variants"]
        ranked = _ranked(protocol, q, g, metric)
        if protocol == "reid":
            sections.append(("Re-identification", sections_of.reid_section(variants, out)))
        else:
            rows = per_class_table(ranked, q.labels, g.labels, class_names=g.class_names)
            body = sections_of.dml_section(variants, rows, WORST_CLASSES)
            sections.append(("Retrieval", body))
        sections.append(("Retrieval grid", _grid(out, protocol, q, g, ranked)))
        if result.get("identification"):
            sections.append(
                (
                    "Open-set identification",
                    sections_of.identification_section(result["identification"]),
                )
            )
    intro = (
        f"Dataset `{result['dataset']}`, protocol `{protocol}`: {result['n_query']} queries, "
        f"{result['n_gallery']} gallery items; distance `{metric}`."
    )
    markdown, html = sections_of.write_protocol_report(
        out, f"Evaluation: {result['dataset']}", sections, intro=intro
    )
    if html is None:
        result["note"] = "report.html skipped: pip install markdown-it-py (tripletlab[html])"
    return markdown
