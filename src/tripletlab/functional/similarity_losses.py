"""Cosine loss (seed 002, "similarity measurement"): ``1 − cos(x_i, y_i)`` per row."""

from __future__ import annotations

from torch import Tensor

from tripletlab.functional.distances import row_distance
from tripletlab.functional.regression_losses import ELEMENT_REDUCTIONS, ElementReduction, _reduce
from tripletlab.validation import (
    check_choice,
    check_embeddings,
    check_same_shape,
    compute_dtype,
)


def cosine_loss(x: Tensor, y: Tensor, reduction: ElementReduction = "mean") -> Tensor:
    """Cosine loss ``1 − ⟨x_i, y_i⟩ / (‖x_i‖‖y_i‖)`` per row, in [0, 2].

    0 for rows pointing the same way, 1 for orthogonal rows, 2 for opposite rows; a zero row
    has cosine 0 (loss 1). The cosine *distance* of tripletlab's ``metric="cosine"``.

    Args:
        x: (N, D) floating tensor.
        y: (N, D) floating tensor.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` ((N,) per row).

    Example:
        >>> import torch
        >>> x = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
        >>> cosine_loss(x, torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
        tensor(0.5000)
    """
    check_choice(reduction, "reduction", ELEMENT_REDUCTIONS)
    x = check_embeddings(x, "x")
    y = check_embeddings(y, "y")
    check_same_shape(("x", x), ("y", y))
    dtype = compute_dtype(x, y)
    values = row_distance(x.to(dtype), y.to(dtype), "cosine")
    return _reduce(values, reduction).to(x.dtype)
