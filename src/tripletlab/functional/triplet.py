"""The triplet margin loss on explicit triplets, with its hand-derived backward pass.

For anchor ``a``, positive ``p`` and negative ``n`` (rows of three (N, D) tensors), margin ``m``
and distance ``D``::

    ℓ_i = h(D(a_i, p_i) − D(a_i, n_i) + m),     h(x) = [x]₊  or  μ·softplus(x/μ)

The backward pass is a custom :class:`torch.autograd.Function` that writes the three gradients
of seed 000 directly. With ``x = d_ap − d_an + m`` and ``h'(x)`` (the indicator ``x > 0`` for the
hinge, ``sigmoid(x/μ)`` when smoothed):

* ``sqeuclidean``: ∂a = 2(n − p)·h', ∂p = −2(a − p)·h', ∂n = 2(a − n)·h';
* ``euclidean``:   ∂a = ((a − p)/d_ap − (a − n)/d_an)·h', ∂p = −(a − p)/d_ap·h',
  ∂n = (a − n)/d_an·h', where a unit vector (x − y)/‖x − y‖ is taken as 0 at distance 0, so
  identical points give a finite (zero) gradient instead of NaN;
* ``cosine`` (D = 1 − cos): with ∇ₓcos(x, y) = (ŷ − cos·x̂)/‖x‖,
  ∂a = (∇ₐcos(a, n) − ∇ₐcos(a, p))·h', ∂p = −∇ₚcos(p, a)·h', ∂n = ∇ₙcos(n, a)·h';
  a zero vector (whose cosine is defined as 0) gets a zero gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tripletlab.functional._compile import eager_under_compile
from tripletlab.functional._validation import (
    check_choice,
    check_embeddings,
    check_nonnegative,
    check_same_shape,
    check_scaled_result,
    check_smoothing,
    compute_dtype,
    finite_max_abs,
    overflow_scale,
)
from tripletlab.functional.distances import METRIC_DEGREE, METRICS, Metric, row_distance
from tripletlab.functional.reductions import REDUCTIONS, Reduction, reduce_loss
from tripletlab.functional.smoothing import smooth_hinge, smooth_hinge_derivative

_NORM_EPS = 1e-12


@eager_under_compile
def triplet_margin_loss(
    anchor: Tensor,
    positive: Tensor,
    negative: Tensor,
    margin: float = 0.2,
    metric: Metric = "sqeuclidean",
    smoothing: float | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Triplet margin loss (FaceNet form by default) on N explicit triplets.

    ``ℓ_i = h(D(a_i, p_i) − D(a_i, n_i) + margin)`` with ``h`` the hinge ``[x]₊`` (``smoothing``
    None or 0) or ``μ·softplus(x/μ)`` (``smoothing = μ > 0``; μ = 1 with margin 0 is Hermans et
    al.'s soft margin). The default squared euclidean distance is Schroff et al.'s form:
    ``[‖a − p‖² − ‖a − n‖² + α]₊`` with α = 0.2.

    Unlike :func:`torch.nn.functional.triplet_margin_loss`, the default distance is *squared*
    and no ``eps`` is added inside the norm; ``metric="euclidean"`` gives the plain L2 form with
    a gradient that stays finite (0) at distance 0.

    Args:
        anchor: (N, D) floating tensor of anchor embeddings.
        positive: (N, D) embeddings of the same class as the anchors.
        negative: (N, D) embeddings of another class.
        margin: α ≥ 0.
        metric: ``"sqeuclidean"`` (default), ``"euclidean"`` or ``"cosine"`` (1 − cos).
        smoothing: None/0 for the hinge, μ > 0 for the smoothed hinge.
        reduction: ``"mean"`` (over all N triplets), ``"mean_active"`` (over triplets with
            loss > 0), ``"sum"`` or ``"none"`` (the (N,) per-triplet losses).

    Returns:
        A 0-dim tensor (or (N,) for ``"none"``) in the input dtype; float16/bfloat16 inputs are
        computed in float32. An empty batch, or one with no active triplet, gives exactly 0 and
        zero gradients.

    Raises:
        TypeError/ValueError naming the argument: non-tensor or integer input, wrong number of
        dimensions, mismatched shapes, NaN/Inf, unknown metric/reduction, negative margin.

    References:
        Schroff, Kalenichenko, Philbin. FaceNet: A Unified Embedding for Face Recognition and
        Clustering. CVPR 2015. https://arxiv.org/abs/1503.03832

    Example:
        >>> a = torch.tensor([[0.0, 0.0]])
        >>> p = torch.tensor([[0.0, 1.0]])
        >>> n = torch.tensor([[1.0, 0.0]])
        >>> triplet_margin_loss(a, p, n, margin=0.2)  # 1 − 1 + 0.2
        tensor(0.2000)
    """
    anchor = check_embeddings(anchor, "anchor", check_values=False)
    positive = check_embeddings(positive, "positive", check_values=False)
    negative = check_embeddings(negative, "negative", check_values=False)
    check_same_shape(("anchor", anchor), ("positive", positive), ("negative", negative))
    margin = check_nonnegative(margin, "margin")
    check_choice(metric, "metric", METRICS)
    mu = check_smoothing(smoothing)
    check_choice(reduction, "reduction", REDUCTIONS)

    out_dtype = torch.promote_types(
        torch.promote_types(anchor.dtype, positive.dtype), negative.dtype
    )
    dtype = compute_dtype(anchor, positive, negative)
    largest = max(
        finite_max_abs(t, n)
        for t, n in ((anchor, "anchor"), (positive, "positive"), (negative, "negative"))
    )
    scale = overflow_scale(largest, anchor.shape[1], dtype)
    # scaled rows (a power of two, exact) when distances could overflow: the hinge and its
    # smoothing are homogeneous, h(x/c; μ) = h(x; cμ)/c, so m and μ scale with the distances
    unit = scale ** METRIC_DEGREE[metric]
    rows = [
        t.to(dtype) if scale == 1.0 else t.to(dtype) * scale for t in (anchor, positive, negative)
    ]
    losses = _TripletMarginFunction.apply(*rows, margin * unit, metric, mu and mu * unit)
    if unit != 1.0:
        losses = check_scaled_result(losses / unit, scale, "the triplet loss")
    return reduce_loss(losses, reduction).to(out_dtype)


def triplet_margin_values(
    anchor: Tensor, positive: Tensor, negative: Tensor, margin: float, metric: str
) -> Tensor:
    """The pre-hinge values ``D(a, p) − D(a, n) + margin`` ((N,), no validation, no gradient path).

    ``> 0`` means the triplet is active (hard or semi-hard); useful for counting.
    """
    return row_distance(anchor, positive, metric) - row_distance(anchor, negative, metric) + margin


class _TripletMarginFunction(torch.autograd.Function):
    """Per-triplet losses (N,) with the hand-derived gradients of seed 000 as backward."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        anchor: Tensor,
        positive: Tensor,
        negative: Tensor,
        margin: float,
        metric: str,
        mu: float | None,
    ) -> Tensor:
        ctx.save_for_backward(anchor, positive, negative)
        ctx.margin, ctx.metric, ctx.mu = margin, metric, mu
        return smooth_hinge(triplet_margin_values(anchor, positive, negative, margin, metric), mu)

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        anchor, positive, negative = ctx.saved_tensors
        # Recomputed from the inputs (O(N·D), no extra memory held between passes) so that the
        # backward is itself differentiable: double backward works for μ > 0.
        x = triplet_margin_values(anchor, positive, negative, ctx.margin, ctx.metric)
        # h'(x)·upstream gradient, one weight per triplet; inactive triplets get exactly 0.
        weight = (smooth_hinge_derivative(x, ctx.mu) * grad_output)[:, None]
        grad_a, grad_p, grad_n = _distance_difference_gradients(
            anchor, positive, negative, ctx.metric
        )
        return weight * grad_a, weight * grad_p, weight * grad_n, None, None, None


def _distance_difference_gradients(
    a: Tensor, p: Tensor, n: Tensor, metric: str
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of ``D(a, p) − D(a, n)`` with respect to a, p and n, row by row."""
    if metric == "sqeuclidean":
        return 2 * (n - p), -2 * (a - p), 2 * (a - n)
    if metric == "euclidean":
        u_ap = _unit(a - p)
        u_an = _unit(a - n)
        return u_ap - u_an, -u_ap, u_an
    # cosine: D = 1 − cos, so ∇D = −∇cos.
    return (
        _cosine_gradient(a, n) - _cosine_gradient(a, p),
        -_cosine_gradient(p, a),
        _cosine_gradient(n, a),
    )


def _unit(diff: Tensor) -> Tensor:
    """diff / ‖diff‖ row-wise, 0 where diff = 0 (the subgradient that keeps gradients finite)."""
    norm = diff.norm(dim=1, keepdim=True)
    return torch.where(norm > 0, diff / norm.clamp_min(_NORM_EPS), torch.zeros_like(diff))


def _cosine_gradient(x: Tensor, y: Tensor) -> Tensor:
    """∇ₓ cos(x, y) = (ŷ − cos·x̂)/‖x‖ row-wise; 0 where x or y is a zero vector."""
    x_norm = x.norm(dim=1, keepdim=True)
    y_norm = y.norm(dim=1, keepdim=True)
    x_hat = x / x_norm.clamp_min(_NORM_EPS)
    y_hat = y / y_norm.clamp_min(_NORM_EPS)
    cos = (x_hat * y_hat).sum(dim=1, keepdim=True)
    grad = (y_hat - cos * x_hat) / x_norm.clamp_min(_NORM_EPS)
    defined = (x_norm > _NORM_EPS) & (y_norm > _NORM_EPS)
    return torch.where(defined, grad, torch.zeros_like(grad))
