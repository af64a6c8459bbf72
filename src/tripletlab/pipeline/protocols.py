"""A dataset's own protocol on a trained run, with and without re-ranking / query expansion.

:func:`protocol_variants` evaluates embedded query / gallery sets by the layout's protocol
(``reid``: CMC, mAP, mINP with same-camera exclusion; ``query_gallery`` / ``self``: P@1,
R-precision, MAP@R, Recall@k; ``verification``: LFW's 10 folds) — the plain ranking first,
then k-reciprocal re-ranking (Zhong et al. 2017) and average / α-weighted query expansion
(Chum et al. 2007; Radenović et al. 2018) when asked, so every metric is shown beside its
plain value. Everything is computed exactly, one chunk of query rows at a time within
``memory_budget_bytes``.

Example:
    >>> import numpy as np, torch
    >>> x = torch.tensor([[0.0], [0.1], [1.0], [1.2]])
    >>> s = EvalSet(x, np.array([0, 0, 1, 1]))
    >>> out = protocol_variants("self", s, s, PostProcessing(qe="aqe", qe_n=1), "euclidean")
    >>> sorted(out), out["plain"]["precision_at_1"]
    (['aqe', 'plain'], 1.0)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from tripletlab.errors import ConfigError
from tripletlab.evaluate.dml_protocol import DEFAULT_KS, dml_metrics_from_blocks
from tripletlab.evaluate.knn import DEFAULT_MEMORY_BUDGET
from tripletlab.evaluate.ranking import distance_blocks
from tripletlab.evaluate.reid import reid_metrics_from_blocks

__all__ = ["QE_ALPHAS", "EvalSet", "PostProcessing", "protocol_variants", "variant_blocks"]

#: α of each query-expansion flavour: 0 is plain averaging (AQE), 3 Radenović et al.'s α-QE.
QE_ALPHAS = {"aqe": 0.0, "alpha-qe": 3.0}
#: Protocols that rank a gallery (re-ranking and query expansion apply to them).
RETRIEVAL_PROTOCOLS = ("reid", "query_gallery", "self")


@dataclass(frozen=True)
class PostProcessing:
    """Re-ranking / query expansion asked for, and the memory of one chunk of query rows.

    ``qe`` is ``None``, ``"aqe"`` or ``"alpha-qe"``; ``qe_alpha`` is used by ``alpha-qe``.
    """

    rerank: bool = False
    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3
    qe: str | None = None
    qe_n: int = 5
    qe_alpha: float = QE_ALPHAS["alpha-qe"]
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET

    def __post_init__(self) -> None:
        if self.qe is not None and self.qe not in QE_ALPHAS:
            raise ConfigError(f"query expansion {self.qe!r}: choose one of {', '.join(QE_ALPHAS)}")

    @property
    def asked(self) -> bool:
        return self.rerank or self.qe is not None


@dataclass
class EvalSet:
    """Embedded samples to evaluate: (N, D) ``embeddings``, (N,) ``labels``, optional
    ``cameras``, and ``ids`` tracing each row to its file (path, or ``FILE#ROW``)."""

    embeddings: Tensor
    labels: np.ndarray
    cameras: np.ndarray | None = None
    ids: list[str] = field(default_factory=list)
    paths: list[Path] | None = None
    class_names: dict[int, str] = field(default_factory=dict)


def variant_blocks(
    variant: str,
    query: EvalSet,
    gallery: EvalSet | None,
    options: PostProcessing,
    metric: str,
) -> Iterable[tuple[int, Tensor]]:
    """(first row, rows × G distances) of one variant: ``plain``, ``re-ranked`` or a QE name.

    ``gallery=None``: query = gallery (each query's own row must be excluded by the caller).
    """
    budget = options.memory_budget_bytes
    g = None if gallery is None else gallery.embeddings
    if variant == "re-ranked":
        from tripletlab.evaluate.rerank import k_reciprocal_blocks

        return k_reciprocal_blocks(
            query.embeddings,
            g,
            k1=options.k1,
            k2=options.k2,
            lambda_value=options.lambda_value,
            memory_budget_bytes=budget,
        )
    reference = query.embeddings if g is None else g
    if variant in QE_ALPHAS:
        from tripletlab.evaluate.query_expansion import expand_queries

        alpha = options.qe_alpha if variant == "alpha-qe" else 0.0
        expanded = expand_queries(
            query.embeddings,
            reference,
            n=options.qe_n,
            alpha=alpha,
            exclude_self=g is None,
            memory_budget_bytes=budget,
        )
        # Expanded queries are L2-normalised blends: compared by cosine (Radenović et al.).
        return distance_blocks(expanded, reference, metric="cosine", memory_budget_bytes=budget)
    return distance_blocks(query.embeddings, reference, metric=metric, memory_budget_bytes=budget)


def _variants(options: PostProcessing) -> list[str]:
    names = ["plain"]
    if options.rerank:
        names.append("re-ranked")
    if options.qe is not None:
        names.append(options.qe)
    return names


def protocol_variants(
    protocol: str,
    query: EvalSet,
    gallery: EvalSet,
    options: PostProcessing,
    metric: str,
    ks: tuple[int, ...] = DEFAULT_KS,
) -> dict[str, dict[str, Any]]:
    """{variant: metrics} of a retrieval protocol; ``plain`` always, the others when asked.

    ``protocol="self"``: ``query`` is also the gallery (``gallery`` is ignored; pass the
    same set), each query's own image is excluded.
    """
    if protocol not in RETRIEVAL_PROTOCOLS:
        raise ConfigError(f"protocol {protocol!r} does not rank a gallery")
    self_protocol = protocol == "self"
    g = None if self_protocol else gallery
    labels = query.labels if self_protocol else gallery.labels
    results = {}
    for variant in _variants(options):
        blocks = variant_blocks(variant, query, g, options, metric)
        if protocol == "reid":
            results[variant] = reid_metrics_from_blocks(
                blocks,
                query.labels,
                labels,
                query_cameras=query.cameras,
                gallery_cameras=gallery.cameras,
            )
        else:
            results[variant] = dml_metrics_from_blocks(
                blocks, query.labels, labels, exclude_self=self_protocol, ks=ks
            )
    return results
