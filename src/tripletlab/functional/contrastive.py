"""The contrastive (pair) loss, in its two classic forms, on explicit pairs and on a batch.

With ``d = D(x1, x2)`` (``metric``; the euclidean distance by default), ``y = 1`` for a pair of
the same class and ``y = 0`` otherwise, and margin ``m``:

* ``form="hadsell"`` (Hadsell, Chopra & LeCun 2006; seed 004)::

      ℓ = y·d² + (1 − y)·[m − d]₊²

* ``form="squared"`` (Chopra, Hadsell & LeCun 2005 as written in seed 001, ``ε = m``)::

      ℓ = y·d² + (1 − y)·[m − d²]₊

Metric semantics: ``metric`` names the distance ``d`` that appears in both formulas, so the
default ``"euclidean"`` reproduces the seeds exactly (``d² = ‖x1 − x2‖²``). ``"cosine"`` uses
``d = 1 − cos``, the usual choice for L2-normalised embeddings. ``"sqeuclidean"`` is accepted
for uniformity but makes ``d`` itself the squared distance (so positives contribute ‖·‖⁴);
it is rarely what you want.

Gradients flow by autograd through :func:`~tripletlab.functional.distances.safe_sqrt`, so
identical points give a finite (zero) gradient.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from tripletlab.functional._compile import eager_under_compile
from tripletlab.functional._refined_distances import differentiable_values, refined_distances
from tripletlab.functional._validation import (
    check_choice,
    check_embeddings,
    check_labels,
    check_nonnegative,
    check_same_shape,
    check_scaled_result,
    compute_dtype,
    finite_max_abs,
    overflow_scale,
)
from tripletlab.functional.distances import (
    METRIC_DEGREE,
    METRICS,
    Metric,
    pairwise_distances,
    row_distance,
)
from tripletlab.functional.reductions import REDUCTIONS, Reduction, reduce_loss

ContrastiveForm = Literal["hadsell", "squared"]
CONTRASTIVE_FORMS: tuple[str, ...] = ("hadsell", "squared")


@eager_under_compile
def contrastive_loss(
    x1: Tensor,
    x2: Tensor,
    same: Tensor,
    margin: float = 1.0,
    form: ContrastiveForm = "hadsell",
    metric: Metric = "euclidean",
    reduction: Reduction = "mean",
) -> Tensor:
    """Contrastive loss on N explicit pairs ``(x1_i, x2_i)``.

    ``hadsell``: ``ℓ_i = y_i·d_i² + (1 − y_i)·[m − d_i]₊²``;
    ``squared``: ``ℓ_i = y_i·d_i² + (1 − y_i)·[m − d_i²]₊``, with ``d_i = D(x1_i, x2_i)``.

    Args:
        x1: (N, D) floating tensor.
        x2: (N, D) floating tensor.
        same: (N,) bool or integer tensor, 1/True where the pair shares a class (a float tensor
            of 0/1 values is also accepted).
        margin: m ≥ 0.
        form: ``"hadsell"`` (default) or ``"squared"``.
        metric: the distance d: ``"euclidean"`` (default), ``"cosine"`` or ``"sqeuclidean"``
            (see the module docstring).
        reduction: ``"mean"``, ``"mean_active"`` (over pairs with loss > 0), ``"sum"`` or
            ``"none"`` ((N,) per-pair losses).

    Returns:
        0-dim tensor (or (N,)) in the input dtype (float16/bfloat16 computed in float32).
        An empty batch gives exactly 0.

    References:
        Hadsell, Chopra, LeCun. Dimensionality Reduction by Learning an Invariant Mapping.
        CVPR 2006. Chopra, Hadsell, LeCun. Learning a Similarity Metric Discriminatively, with
        Application to Face Verification. CVPR 2005.

    Example:
        >>> x1 = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
        >>> x2 = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
        >>> contrastive_loss(x1, x2, torch.tensor([1, 0]), margin=1.0, reduction="none")
        tensor([25.0000,  0.2500])
    """
    x1 = check_embeddings(x1, "x1", check_values=False)
    x2 = check_embeddings(x2, "x2", check_values=False)
    check_same_shape(("x1", x1), ("x2", x2))
    same = check_same(same, x1.shape[0])
    margin = check_nonnegative(margin, "margin")
    check_choice(form, "form", CONTRASTIVE_FORMS)
    check_choice(metric, "metric", METRICS)
    check_choice(reduction, "reduction", REDUCTIONS)

    out_dtype = torch.promote_types(x1.dtype, x2.dtype)
    dtype = compute_dtype(x1, x2)
    largest = max(finite_max_abs(x1, "x1"), finite_max_abs(x2, "x2"))
    scale = overflow_scale(largest, x1.shape[1], dtype)
    margin_unit, loss_unit = contrastive_units(scale, metric, form)
    d = row_distance(x1.to(dtype) * scale, x2.to(dtype) * scale, metric)
    losses = pair_losses(d, same.to(device=d.device), margin * margin_unit, form) / loss_unit
    losses = check_scaled_result(losses, scale, "the contrastive loss")
    return reduce_loss(losses, reduction).to(out_dtype)


def contrastive_units(scale: float, metric: str, form: str) -> tuple[float, float]:
    """Factors of the margin and of the loss when the embeddings are scaled by ``scale``.

    With D(c·x, c·y) = c^k·D(x, y) (k = 2, 1, 0 for sqeuclidean, euclidean, cosine), the
    ``"hadsell"`` margin compares with d (factor c^k), the ``"squared"`` margin with d²
    (c^2k), and both losses are quadratic in d (c^2k): the scaled computation is exact.
    """
    degree = METRIC_DEGREE[metric]
    margin_unit = scale ** (degree if form == "hadsell" else 2 * degree)
    return margin_unit, scale ** (2 * degree)


@eager_under_compile
def batch_contrastive_loss(
    embeddings: Tensor,
    labels: Tensor,
    margin: float = 1.0,
    form: ContrastiveForm = "hadsell",
    metric: Metric = "euclidean",
    reduction: Reduction = "mean",
    return_stats: bool = False,
) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
    """Contrastive loss over all B(B−1)/2 pairs ``i < j`` of a labelled batch.

    Builds the (B, B) distance matrix once (:func:`pairwise_distances`, one GEMM): O(B²) time
    and memory, no Python loop. A pair is positive when ``labels[i] == labels[j]``.

    Args:
        embeddings: (B, D) floating tensor.
        labels: (B,) integer tensor.
        margin, form, metric: as in :func:`contrastive_loss`.
        reduction: ``"mean"`` (over all i < j pairs), ``"mean_active"``, ``"sum"``, or
            ``"none"``: a (B,) tensor whose entry i is half the summed loss of the pairs that
            contain i (each pair is shared by its two members), so that it sums to ``"sum"``.
        return_stats: also return a dict of 0-dim tensors: ``positive_pairs``,
            ``negative_pairs``, ``active_pairs`` and ``active_fraction`` (active / all pairs).

    Returns:
        The loss, or ``(loss, stats)`` when ``return_stats``. A batch with fewer than two
        samples gives exactly 0.

    Example:
        >>> emb = torch.tensor([[0.0, 0.0], [0.0, 0.5], [3.0, 4.0]])
        >>> batch_contrastive_loss(emb, torch.tensor([0, 0, 1]), reduction="sum")
        tensor(0.2500)
    """
    embeddings = check_embeddings(embeddings, "embeddings", check_values=False)
    labels = check_labels(labels, embeddings.shape[0])
    margin = check_nonnegative(margin, "margin")
    check_choice(form, "form", CONTRASTIVE_FORMS)
    check_choice(metric, "metric", METRICS)
    check_choice(reduction, "reduction", REDUCTIONS)

    out_dtype = embeddings.dtype
    dist, scale, margin_unit, loss_unit = _exact_pair_distances(embeddings, metric, margin, form)
    labels = labels.to(dist.device)
    n = dist.shape[0]
    same = labels[:, None] == labels[None, :]
    upper = torch.ones(n, n, dtype=torch.bool, device=dist.device).triu(diagonal=1)
    losses = pair_losses(dist, same, margin * margin_unit, form) * upper
    if loss_unit != 1.0:
        losses = check_scaled_result(losses / loss_unit, scale, "the contrastive loss")
    if reduction == "none":
        # Each pair belongs to both of its members: half of it to each.
        per_anchor = 0.5 * (losses.sum(dim=1) + losses.sum(dim=0))
        loss = per_anchor
    else:
        count = n * (n - 1) // 2
        total = losses.sum()
        if reduction == "sum":
            loss = total
        elif reduction == "mean":
            loss = total / max(count, 1)
        else:
            loss = total / ((losses.detach() > 0).sum().clamp_min(1))
    loss = loss.to(out_dtype)
    if not return_stats:
        return loss
    with torch.no_grad():
        positives = (same & upper).sum()
        negatives = (~same & upper).sum()
        active = (losses > 0).sum()
        stats = {
            "positive_pairs": positives,
            "negative_pairs": negatives,
            "active_pairs": active,
            "active_fraction": active.to(dist.dtype) / max(n * (n - 1) // 2, 1),
        }
    return loss, stats


def _exact_pair_distances(
    embeddings: Tensor, metric: str, margin: float, form: str
) -> tuple[Tensor, float, float, float]:
    """The (B, B) distances with exact decisions at 0 and at the margin, and the units.

    Returns ``(distances, scale, margin_unit, loss_unit)``: the embeddings are scaled by
    ``scale`` (a power of two, 1 unless their distances would overflow).
    """
    dtype = compute_dtype(embeddings)
    largest = finite_max_abs(embeddings, "embeddings")
    scale = overflow_scale(largest, embeddings.shape[1], dtype)
    margin_unit, loss_unit = contrastive_units(scale, metric, form)
    x = embeddings.to(dtype) * scale if scale != 1.0 else embeddings.to(dtype)
    if x.shape[0] == 0:
        empty = pairwise_distances(x, metric=metric)  # type: ignore[arg-type]
        return empty, scale, margin_unit, loss_unit
    # the decisions: d > 0 for a positive pair, m − d > 0 (hadsell) or m − d² > 0 (squared)
    threshold = margin * margin_unit
    critical = threshold if form == "hadsell" else math.sqrt(threshold)
    graph, values = refined_distances(x, metric, constants=(critical,))
    return differentiable_values(graph, values, metric), scale, margin_unit, loss_unit


def pair_losses(d: Tensor, same: Tensor, margin: float, form: str) -> Tensor:
    """Elementwise contrastive loss for distances ``d`` and a same-class mask ``same`` (no checks)."""
    same = same.to(d.dtype)
    if form == "hadsell":
        negative = (margin - d).clamp_min(0).square()
    else:
        negative = (margin - d.square()).clamp_min(0)
    return same * d.square() + (1 - same) * negative


def check_same(same: object, n: int) -> Tensor:
    """The pair labels: an (n,) bool/integer tensor (or float 0/1), returned as bool."""
    if not isinstance(same, Tensor):
        raise TypeError(f"same must be a torch.Tensor; got {type(same).__name__}")
    if same.dim() != 1 or same.shape[0] != n:
        raise ValueError(f"same must have shape ({n},); got {tuple(same.shape)}")
    if same.is_complex():
        raise TypeError(f"same must be a bool or integer tensor; got dtype {same.dtype}")
    if same.numel() and not bool(((same == 0) | (same == 1)).all()):
        raise ValueError("same must contain only 0/1 (or False/True) values")
    return same.bool()
