"""The gradient through a batch's own distance matrix, without the whole B×B gradient.

For a loss L that depends on the rows x (B, D) through the matrix D = pairwise(x, x), with
G = ∂L/∂D given row block by row block:

* squared euclidean, S_an = ‖x_a − x_n‖² (any centring x_c: the distances do not see it):
  ∂L/∂x = 2[(G·1 + Gᵀ·1) ⊙ x_c − (G + Gᵀ) x_c];
* cosine, D_an = 1 − ⟨x̂_a, x̂_n⟩ with x̂ = x/‖x‖: with H = −(G + Gᵀ) x̂,
  ∂L/∂x_a = (H_a − ⟨H_a, x̂_a⟩ x̂_a)/‖x_a‖ (0 for a zero row).

Both need only G·1, Gᵀ·1, G·R and Gᵀ·R (R = x_c or x̂): sums of per-block products, so the
gradient of a B×B matrix is never held whole — the memory of the backward pass is one row
block (batch-all at B = 8192 keeps 0.25 GB of distances and its weights, not another
0.25 GB of gradient). These are the backward passes of the autograd Functions in
:mod:`tripletlab.functional._refined_distances`, computed by blocks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from tripletlab.functional._refined_distances import COSINE_EPS, unit_rows

#: Bytes of temporaries per element of a gradient row block: the float32 block and about
#: three more of its size while a block is built (weights converted, a mask, a product).
_BYTES_PER_BLOCK_ELEMENT = 16


def self_distance_backward(
    x: Tensor, metric: str, gradient_rows: Callable[[slice], Tensor], memory_budget: int
) -> Tensor:
    """∂L/∂x from the row blocks of G = ∂L/∂D, D the (B, B) matrix of ``x`` against itself.

    Args:
        x: (B, D) the rows the matrix was computed from.
        metric: ``"sqeuclidean"`` (G is ∂L/∂S for both euclidean forms: the caller applies
            the chain rule of the root) or ``"cosine"``.
        gradient_rows: ``rows -> G[rows, :]``, a (len(rows), B) tensor in x's dtype.
        memory_budget: bytes a row block and its temporaries may take.

    Returns:
        (B, D) the gradient with respect to ``x``.

    Example:
        >>> x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
        >>> g = torch.randn(5, 5, dtype=torch.float64)
        >>> (torch.cdist(x, x) ** 2 * g).sum().backward()
        >>> got = self_distance_backward(x.detach(), "sqeuclidean", lambda r: g[r], 2**20)
        >>> torch.allclose(got, x.grad)
        True
    """
    n = x.shape[0]
    if metric == "cosine":
        basis, norm = unit_rows(x)
    else:
        basis = x - x.mean(dim=0, keepdim=True)
    row_sums = torch.zeros(n, dtype=x.dtype, device=x.device)
    column_sums = torch.zeros(n, dtype=x.dtype, device=x.device)
    product = torch.zeros_like(basis)  # (G + Gᵀ)·basis
    step = max(1, memory_budget // (_BYTES_PER_BLOCK_ELEMENT * max(1, n)))
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        block = gradient_rows(rows)
        row_sums[rows] = block.sum(1)
        column_sums += block.sum(0)
        product[rows] += block @ basis
        product.addmm_(block.T, basis[rows])
    if metric != "cosine":
        return 2 * ((row_sums + column_sums)[:, None] * basis - product)
    toward = -product
    radial = (toward * basis).sum(1, keepdim=True)
    nonzero = (norm > COSINE_EPS)[:, None]
    safe = torch.where(nonzero, norm[:, None], torch.ones_like(norm[:, None]))
    return torch.where(nonzero, (toward - radial * basis) / safe, 0)
