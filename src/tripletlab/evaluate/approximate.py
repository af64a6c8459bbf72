"""Choosing the kNN backend of an evaluation, and measuring what an approximate one costs.

:func:`make_knn_backend` turns the evaluation options a user gives (exact or approximate,
memory budget, threads, faiss parameters) into a backend. :func:`approximation_gap` runs
the retrieval metrics of a sample of queries against the FULL reference set twice — exact
(:class:`~tripletlab.evaluate.knn.TorchKNN`) and with the approximate backend — and reports
each metric's difference, so an approximate number is never shown without its error.
Approximate indexes (faiss IVF, HNSW) may return fewer than k neighbours; missing slots
count as non-matching, which is what such an index would show a user.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from tripletlab.evaluate.knn import DEFAULT_MEMORY_BUDGET, KNNBackend, TorchKNN
from tripletlab.evaluate.retrieval import per_query_scores, summarise
from tripletlab.functional._validation import check_choice, check_embeddings, check_labels

KNN_METHODS: tuple[str, ...] = ("exact", "flat", "ivf", "hnsw")
DEFAULT_GAP_QUERIES = 5_000  # queries whose exact metrics are computed for the gap


def make_knn_backend(
    method: str = "exact",
    *,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    threads: int | None = None,
    device: str | torch.device | None = None,
    **faiss_options: Any,
) -> KNNBackend:
    """The kNN backend for an evaluation.

    Args:
        method: ``"exact"`` (chunked torch GEMM, any device: the default), ``"flat"``
            (faiss exact brute force), ``"ivf"`` or ``"hnsw"`` (faiss approximate).
        memory_budget_bytes: working memory of the exact engine's distance blocks.
        threads: CPU threads (exact: worker threads; faiss: its OpenMP threads).
        device: where the exact engine computes (default: the embeddings' device).
        faiss_options: passed to :class:`~tripletlab.evaluate.knn_faiss.FaissKNN`
            (``nlist``, ``nprobe``, ``hnsw_m``, ``ef_construction``, ``ef_search``, …).

    Example:
        >>> make_knn_backend("exact", memory_budget_bytes=2**26)
        TorchKNN(memory_budget_bytes=67108864, device=None, threads=None)
    """
    check_choice(method, "method", KNN_METHODS)
    if method == "exact":
        if faiss_options:
            raise ValueError(f"faiss options {sorted(faiss_options)} need a faiss method")
        return TorchKNN(memory_budget_bytes=memory_budget_bytes, device=device, threads=threads)
    if device is not None and torch.device(device).type != "cpu":
        raise ValueError(f"faiss methods run on CPU; got device={device!r}")
    from tripletlab.evaluate.knn_faiss import FaissKNN

    return FaissKNN(method, threads=threads, **faiss_options)


def approximation_gap(
    embeddings: Tensor,
    labels: Tensor,
    approximate: KNNBackend,
    *,
    n_queries: int | None = DEFAULT_GAP_QUERIES,
    seed: int = 0,
    metric: str = "sqeuclidean",
    ks: Sequence[int] = (1, 5, 10),
    knn_k: int = 5,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
) -> dict[str, Any]:
    """Exact and approximate leave-one-out retrieval metrics of the same query sample.

    Args:
        embeddings, labels: (N, D) and (N,): the whole set, every row a reference.
        approximate: the backend under test (e.g. ``make_knn_backend("ivf")``).
        n_queries: queries sampled uniformly without replacement (seeded); None for all.
        seed: seed of the sample.
        metric, ks, knn_k, memory_budget_bytes: as in
            :func:`~tripletlab.evaluate.retrieval.retrieval_metrics`.

    Returns:
        ``{"exact": metrics, "approximate": metrics, "gap": {name: approximate − exact},
        "n_sampled": int, "exact_seconds": float, "approximate_seconds": float}``.

    Example:
        >>> x = torch.tensor([[0.0], [0.1], [1.0], [1.2], [0.6]])
        >>> y = torch.tensor([0, 0, 1, 1, 1])
        >>> gap = approximation_gap(x, y, TorchKNN(threads=1), ks=(1,))
        >>> gap["gap"]["map_at_r"], gap["n_sampled"]
        (0.0, 5)
    """
    embeddings = check_embeddings(embeddings, "embeddings")
    labels = check_labels(labels, len(embeddings)).long()
    sample = torch.arange(len(embeddings))
    if n_queries is not None and n_queries < len(embeddings):
        generator = torch.Generator().manual_seed(seed)
        sample = torch.randperm(len(embeddings), generator=generator)[:n_queries].sort().values
    options: dict[str, Any] = {"metric": metric, "ks": ks, "knn_k": knn_k}
    found: dict[str, Any] = {"n_sampled": len(sample)}
    exact = TorchKNN(memory_budget_bytes=memory_budget_bytes)
    for name, backend in (("exact", exact), ("approximate", approximate)):
        started = time.perf_counter()
        scores = per_query_scores(
            embeddings[sample.to(embeddings.device)],
            labels[sample.to(labels.device)],
            embeddings,
            labels,
            knn=backend,
            exclude=sample.to(embeddings.device),
            memory_budget_bytes=memory_budget_bytes,
            **options,
        )
        found[name] = summarise(scores)
        found[f"{name}_seconds"] = time.perf_counter() - started
    found["gap"] = {
        name: found["approximate"][name] - value
        for name, value in found["exact"].items()
        if not name.startswith("n_")
    }
    return found
