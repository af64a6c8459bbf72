"""What the ``train`` verb returns: :class:`RunResult`, and the metrics shown first.

Example:
    >>> from pathlib import Path
    >>> result = RunResult(Path("runs/r"), {"precision_at_1": 0.9}, {"precision_at_1": 0.5},
    ...                    history=[], report_path=None, seconds=1.0, dataset="digits",
    ...                    n_test=10)
    >>> result.rank, result.metrics["precision_at_1"] - result.baseline["precision_at_1"]
    (0, 0.4)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["KEY_METRICS", "RunResult"]

#: Metrics printed by the CLI and put first in the report table.
KEY_METRICS = ("precision_at_1", "map_at_r", "r_precision")


@dataclass
class RunResult:
    """What :func:`~tripletlab.pipeline.training.run_training` returns (and writes into
    ``run_dir``).

    ``metrics``/``baseline``: test metrics of the embedding and of the raw features (empty on
    ranks other than 0); ``summary``: the content of ``metrics.json``.
    """

    run_dir: Path
    metrics: dict[str, float | None]
    baseline: dict[str, float | None]
    history: list[dict[str, Any]]
    report_path: Path | None
    seconds: float
    dataset: str
    n_test: int
    rank: int = 0
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def extra(self) -> dict[str, Any]:
        """Deprecated: the untyped dict of before (``summary`` plus rank, dataset, n_test)."""
        warnings.warn(
            "RunResult.extra is deprecated; use RunResult.summary, .rank, .dataset, .n_test",
            DeprecationWarning,
            stacklevel=2,
        )
        return {**self.summary, "rank": self.rank, "dataset": self.dataset, "n_test": self.n_test}
