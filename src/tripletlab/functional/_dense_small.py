"""Dense forms for small batches: a few whole-matrix operations instead of the index machinery.

Below :data:`DENSE_MAX_BATCH` rows the positive index matrix, the row chunks and the tie
search cost more (in operator calls and Python time) than the B×B masks they avoid; measured
on 2 CPU threads, the dense batch-hard form takes about a third of the indexed one's time at
B = 32–128 (benchmarks/batch_losses.py, "small-B grid"). The dense form needs no tie
refinement: batch-hard decides nothing on the matrix but which positive and negative to take,
and it recomputes their distances directly, so exactly tied candidates (whose direct distances
are equal) give the same loss whichever is taken.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from tripletlab.functional._refined_distances import unit_rows
from tripletlab.functional.distances import row_distance

#: Largest batch computed by the dense forms (B×B masks of a few hundred kB at most).
DENSE_MAX_BATCH = 256


def dense_hardest_pairs(x: Tensor, labels: Tensor, metric: str) -> tuple[Tensor, Tensor, Tensor]:
    """(positive column, negative column, valid) per anchor from dense B×B masks.

    ``valid`` marks anchors with a positive and a negative; the columns are arbitrary (but
    in range) elsewhere. The distance matrix is computed without autograd.
    """
    with torch.no_grad():
        if metric == "cosine":
            x_hat, _ = unit_rows(x)
            scores = -(x_hat @ x_hat.T)  # 1 − cos, up to the constant: same order
        else:
            sq = (x * x).sum(1)
            scores = torch.addmm(sq[:, None] + sq[None, :], x, x.T, alpha=-2)
        same = labels[:, None] == labels[None, :]
        positive = same.fill_diagonal_(False)
        negative = labels[:, None] != labels[None, :]
        hardest_positive = torch.where(positive, scores, -math.inf).argmax(1)
        hardest_negative = torch.where(negative, scores, math.inf).argmin(1)
        valid = positive.any(1) & negative.any(1)
    return hardest_positive, hardest_negative, valid


def dense_batch_hard_terms(x: Tensor, labels: Tensor, metric: str) -> tuple[Tensor, Tensor, Tensor]:
    """(d_ap, d_an, valid) of each anchor's hardest triplet, distances recomputed directly."""
    p, n, valid = dense_hardest_pairs(x, labels, metric)
    # index_select: its backward is index_add_, cheaper than advanced indexing's index_put_
    d_ap = row_distance(x, x.index_select(0, p), metric)
    d_an = row_distance(x, x.index_select(0, n), metric)
    return d_ap, d_an, valid
