"""Query expansion: average (AQE) and α-weighted (α-QE) — a query becomes a blend of itself and
its nearest gallery items, then searches again.

With L2-normalised vectors q̂ and ĝ, s_i = ⟨q̂, ĝ_i⟩ the cosine similarity of the i-th nearest
gallery item (i = 1…n):

    q' = normalise( q̂ + Σ_{i ≤ n} w_i ĝ_i ),   w_i = 1 (AQE, Chum et al. ICCV 2007)
                                              w_i = max(s_i, 0)^α (α-QE, Radenović, Tolias &
                                              Chum, TPAMI 2018)

α = 0 is AQE (0⁰ = 1 here, so non-positive similarities still count once). The query's own
weight is 1 = s₀^α since s₀ = 1. Expanded queries are unit vectors: search them with
``metric="cosine"`` (or euclidean, which ranks unit vectors the same way). With
``exclude_self`` (query = gallery), query i never uses gallery item i.

Memory: one (rows × G) cosine block at a time (``memory_budget_bytes``), plus the (Q, D) output.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tripletlab.evaluate.knn import DEFAULT_MEMORY_BUDGET
from tripletlab.evaluate.ranking import distance_blocks, smallest_k_stable
from tripletlab.functional._validation import check_embeddings

_EPS = 1e-12


def expand_queries(
    query: Tensor,
    gallery: Tensor,
    *,
    n: int = 5,
    alpha: float = 0.0,
    exclude_self: bool = False,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
) -> Tensor:
    """Expanded, L2-normalised queries (see the module docstring).

    Args:
        query: (Q, D) float queries.
        gallery: (G, D) float gallery.
        n: gallery neighbours blended in (≥ 1; at most the eligible gallery size).
        alpha: 0 for AQE, > 0 for α-QE (3 is Radenović et al.'s choice).
        exclude_self: query i is gallery item i (query = gallery).
        memory_budget_bytes: working memory of one block.

    Returns:
        (Q, D) tensor in the compute dtype (float32 for float16/bfloat16).

    Example:
        >>> q = torch.tensor([[1.0, 0.0]])
        >>> g = torch.tensor([[1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
        >>> expand_queries(q, g, n=1)       # (1, 0) + (1, 1)/√2, normalised
        tensor([[0.9239, 0.3827]])
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1; got {n!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha < 0:
        raise ValueError(f"alpha must be a number >= 0; got {alpha!r}")
    query = check_embeddings(query, "query")
    gallery = check_embeddings(gallery, "gallery")
    eligible = len(gallery) - int(exclude_self)
    if eligible < 1:
        raise ValueError("query expansion needs at least one eligible gallery item")
    n = min(n, eligible)
    g = torch.nn.functional.normalize(gallery.detach(), dim=1, eps=_EPS)
    out = []
    blocks = distance_blocks(
        query, gallery, metric="cosine", memory_budget_bytes=memory_budget_bytes
    )
    for start, block in blocks:
        if exclude_self:
            rows = torch.arange(len(block))
            block[rows, rows + start] = float("inf")
        nearest = smallest_k_stable(block, n)
        similarity = 1 - block.gather(1, nearest)
        weights = similarity.clamp_min(0).pow(alpha) if alpha > 0 else torch.ones_like(similarity)
        q = torch.nn.functional.normalize(
            query[start : start + len(block)].detach().to(block.dtype), dim=1, eps=_EPS
        )
        blended = q + (weights[:, :, None] * g.to(block.dtype)[nearest]).sum(dim=1)
        out.append(torch.nn.functional.normalize(blended, dim=1, eps=_EPS))
    if not out:
        return torch.empty(0, query.shape[1], dtype=g.dtype)
    return torch.cat(out)
