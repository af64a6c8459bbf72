"""Retrieval metrics sharded over ``torch.distributed`` ranks, equal to one process.

Each of the K ranks holds a contiguous shard of the evaluation set — the rows it embedded,
in rank order (:func:`shard_range` gives the usual split). The shards are all-gathered
once into the full reference set (N × D on every rank: 200,000 × 128 float32 is 100 MB),
each rank searches ITS queries against all references with the chunked exact engine
(leave-one-out: a query's own global row is excluded), and the per-query scores are
gathered back in rank order. Every rank then averages the same scores in the same global
order with an exactly rounded sum, so the result equals — bit for bit —
:func:`~tripletlab.evaluate.retrieval.retrieval_metrics` on the concatenated set, on every
rank. The distance work (N²·D) is split K ways; the traffic is N·D floats once, plus a
few floats per query.

Run it under ``torchrun`` (one machine or several; ``gloo`` on CPU, ``nccl`` on CUDA)
after :func:`tripletlab.distributed.init_distributed`; without a process group it is
:func:`~tripletlab.evaluate.retrieval.retrieval_metrics` itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

from tripletlab.distributed import all_gather_no_grad, all_reduce_sum, get_rank, get_world_size
from tripletlab.evaluate.knn import DEFAULT_MEMORY_BUDGET, KNNBackend, TorchKNN
from tripletlab.evaluate.retrieval import QueryScores, per_query_scores, summarise
from tripletlab.functional._validation import check_embeddings, check_labels


def shard_range(n: int, rank: int | None = None, world_size: int | None = None) -> range:
    """The rows ``rank`` evaluates out of ``n``: contiguous, sizes differing by at most one.

    Example:
        >>> [shard_range(10, r, 3) for r in range(3)]
        [range(0, 4), range(4, 7), range(7, 10)]
    """
    rank = get_rank() if rank is None else rank
    world_size = get_world_size() if world_size is None else world_size
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, {world_size}); got {rank}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def sharded_retrieval_metrics(
    embeddings: Tensor,
    labels: Tensor,
    *,
    references: Tensor | None = None,
    reference_labels: Tensor | None = None,
    metric: str = "sqeuclidean",
    ks: Sequence[int] = (1, 5, 10),
    knn_k: int = 5,
    knn: KNNBackend | None = None,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    group: dist.ProcessGroup | None = None,
) -> dict[str, float]:
    """:func:`~tripletlab.evaluate.retrieval.retrieval_metrics` with the queries split over
    the ranks of ``group``; the same dict on every rank.

    Args:
        embeddings, labels: this rank's shard of the queries, (Q_r, D) and (Q_r,); the
            global query set is the concatenation in rank order (shards may differ in size,
            and may be empty).
        references, reference_labels: this rank's shard of a separate reference (gallery)
            set, gathered the same way; None for leave-one-out over the queries.
        metric, ks, knn_k, knn, memory_budget_bytes: as in ``retrieval_metrics``.
        group: the process group (default: the world).

    Example:
        >>> x = torch.tensor([[0.0], [0.1], [1.0], [1.2], [0.6]])
        >>> y = torch.tensor([0, 0, 1, 1, 1])
        >>> sharded_retrieval_metrics(x, y, ks=(1,))["map_at_r"]  # one process
        0.9
    """
    embeddings = check_embeddings(embeddings, "embeddings")
    labels = check_labels(labels, len(embeddings)).long()
    leave_one_out = references is None
    if leave_one_out:
        if reference_labels is not None:
            raise ValueError("reference_labels given without references")
        local_refs, local_ref_labels = embeddings, labels
    else:
        local_refs = check_embeddings(references, "references")
        if reference_labels is None:
            raise ValueError("references given without reference_labels")
        local_ref_labels = check_labels(reference_labels, len(local_refs), "reference_labels")
    all_refs = all_gather_no_grad(local_refs.detach(), group)
    all_ref_labels = all_gather_no_grad(local_ref_labels.long(), group)
    exclude = None
    if leave_one_out:
        offset = _offset(len(embeddings), embeddings.device, group)
        exclude = torch.arange(offset, offset + len(embeddings), device=embeddings.device)
    knn = TorchKNN(memory_budget_bytes=memory_budget_bytes) if knn is None else knn
    local = per_query_scores(
        embeddings,
        labels,
        all_refs,
        all_ref_labels,
        knn=knn,
        exclude=exclude,
        metric=metric,
        ks=ks,
        knn_k=knn_k,
        memory_budget_bytes=memory_budget_bytes,
    )
    return summarise(_gather_scores(local, embeddings.device, group))


def _offset(n_local: int, device: torch.device, group: dist.ProcessGroup | None) -> int:
    """Global index of this rank's first row: the sizes of the lower ranks, summed."""
    sizes = all_gather_no_grad(torch.tensor([n_local], device=device), group)
    return int(sizes[: get_rank(group)].sum())


def _gather_scores(
    local: QueryScores, device: torch.device, group: dist.ProcessGroup | None
) -> QueryScores:
    """Every rank's per-query scores, concatenated in rank order (= global query order)."""
    scores = {
        name: all_gather_no_grad(values.to(device), group).cpu()
        for name, values in local.scores.items()
    }
    lone = all_reduce_sum(torch.tensor([local.n_lone_queries], device=device), group)
    return QueryScores(scores, n_lone_queries=int(lone))
