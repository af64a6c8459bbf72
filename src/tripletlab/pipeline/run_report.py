"""What the run report adds beyond the training figures: the retrieval grid of the test split,
the per-class table with the worst classes, and the self-contained HTML page.

:func:`extend_run_report` appends to ``report.md`` (written by
:func:`~tripletlab.report.markdown.write_report`) and renders ``report.html`` next to it with
every figure embedded; without markdown-it-py (the ``html`` extra) the HTML is skipped and the
returned note says so. Every test sample queries the others (self excluded), ranked by the
run's distance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor

__all__ = ["extend_run_report"]

#: Results per query in the grid (and ranks kept for the confusion column).
GRID_TOP_K = 8
#: Classes listed in the worst-classes table.
WORST_CLASSES = 10
#: The note left when the HTML page cannot be rendered.
HTML_SKIPPED = "report.html skipped: pip install markdown-it-py (tripletlab[html])"
#: Test images are shown as pixels only when they are images (N, C, H, W).
_IMAGE_NDIM = 4


def extend_run_report(
    report_path: Path,
    embeddings: Tensor,
    labels: np.ndarray,
    raw: np.ndarray,
    class_names: list[str],
    metric: str,
) -> Path | None:
    """Append the grid and worst classes to ``report_path``; write ``report.html``.

    Returns the HTML path, or None when markdown-it-py is absent (a one-line note then ends
    ``report.md``).
    """
    from tripletlab.evaluate.dml_protocol import dml_ranks, per_class_table
    from tripletlab.report.html import HtmlUnavailable, write_html
    from tripletlab.report.protocol_tables import per_class_markdown
    from tripletlab.report.retrieval_grid import plot_retrieval_grid

    labels = np.asarray(labels, dtype=np.int64)
    ranked = dml_ranks(embeddings, labels, metric=metric, top_k=GRID_TOP_K)
    names = dict(enumerate(class_names))
    images = raw if raw.ndim == _IMAGE_NDIM else None
    grid = plot_retrieval_grid(
        ranked.top,
        ranked.top_relevant,
        labels,
        labels,
        report_path.parent / "retrieval_grid.png",
        query_images=images,
        gallery_images=images,
        answerable=ranked.answerable,
        class_names=names,
    )
    rows = per_class_table(ranked, labels, labels, class_names=names)
    worst = per_class_markdown(rows, WORST_CLASSES)
    with open(report_path, "a", encoding="utf-8") as report:
        report.write(
            f"\n## Retrieval on the test split\n\nEach test sample queries the others; green "
            f"results share its class, red do not.\n\n![retrieval grid]({grid.name})\n\n"
            f"**Worst {min(WORST_CLASSES, len(rows))} classes** (by MAP@R) and the class "
            f"their queries most often retrieve first instead:\n\n{worst}\n"
        )
    try:
        return write_html(report_path)
    except HtmlUnavailable:
        with open(report_path, "a", encoding="utf-8") as report:
            report.write(f"\n_{HTML_SKIPPED}_\n")
        return None
