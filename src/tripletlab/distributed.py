"""Gathering embeddings across processes, so that triplet mining is global across ranks.

With ``K`` ranks of local batch ``B``, every rank sees the whole ``K·B`` batch as the reference
set (positives and negatives come from any rank) while its own ``B`` rows are the anchors. The
gather keeps the autograd graph: a gathered row carries its gradient back to the rank that owns
it (PML's ``DistributedLossWrapper`` gathers without gradient, so the cross-rank terms are
lost). The result is exact: loss and gradients equal those of one process on the concatenated
``K·B`` batch (``tests/test_distributed.py`` checks this to 1e-6 on 2 gloo processes).

The scaling, and why
--------------------
Let the single-process loss be ``L = S / N``, ``S`` the sum of the per-element losses (triplets,
anchors or pairs) over the concatenated batch and ``N`` the normaliser of the reduction (the
number of valid elements for ``"mean"``, of active ones for ``"mean_active"``, 1 for
``"sum"``). Split by the rank that owns the anchor, ``S = Σ_r S_r``. Rank ``r`` returns

    ℓ_r = K · S_r / N,       N = all_reduce(N_r)  (detached, a global count)

* Its backward pass gives, through the gather (whose backward sums the gradients that all ranks
  computed for each row and hands each rank its own rows), ``∂/∂x_r Σ_j ℓ_j = K · ∂L/∂x_r``
  for the local embeddings ``x_r``, hence a parameter gradient of ``K · ∂L/∂x_r · ∂x_r/∂θ`` on
  rank ``r``.
* DistributedDataParallel *averages* parameter gradients over the ``K`` ranks:
  ``(1/K) Σ_r K · ∂L/∂x_r · ∂x_r/∂θ = ∂L/∂θ`` — exactly the single-process gradient.
* The values: ``(1/K) Σ_r ℓ_r = L``; :func:`global_mean` gives it for logging. A single
  ``ℓ_r`` is a per-rank share, not the global loss.

Without DDP (summing gradients yourself), use ``scale_by_world_size=False``: ``Σ_r ℓ_r = L``.

:func:`global_batch_loss` is the other exact route, for any batch loss unchanged: every rank
evaluates the loss on the whole gathered batch; the K identical copies make the local gradient
``K·∂L/∂x_r`` and DDP's average brings it back to ``∂L/∂θ`` with no rescaling at all.

Failure handling
----------------
:func:`init_distributed` sets a collective timeout (``timeout_s``, default 300 s, or the
``TRIPLETLAB_DIST_TIMEOUT`` environment variable). A rank that dies closes its connections and
a rank that stops answering runs into the timeout; either way every collective here raises
:class:`DistributedError` naming the rank and the operation instead of hanging.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from tripletlab.errors import ArgumentTypeError, InvalidArgumentError, TripletlabError

DEFAULT_TIMEOUT_S = 300.0
TIMEOUT_ENV = "TRIPLETLAB_DIST_TIMEOUT"

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DistributedError",
    "GatheredBatch",
    "GlobalBatchLoss",
    "all_gather_no_grad",
    "all_gather_with_grad",
    "all_reduce_sum",
    "barrier",
    "destroy_distributed",
    "gather_batch",
    "get_rank",
    "get_world_size",
    "global_batch_loss",
    "global_loss",
    "global_mean",
    "init_distributed",
    "is_distributed",
    "is_main_process",
]


class DistributedError(TripletlabError, RuntimeError):
    """A collective failed: another rank died, or did not answer within the timeout."""


# --- process group ------------------------------------------------------------------------


def is_distributed() -> bool:
    """True when a default process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_world_size(group: dist.ProcessGroup | None = None) -> int:
    """Number of ranks (1 when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def get_rank(group: dist.ProcessGroup | None = None) -> int:
    """This process's rank (0 when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0
    return dist.get_rank(group)


def is_main_process() -> bool:
    """True on rank 0, or when not distributed: the process that writes checkpoints/reports."""
    return get_rank() == 0


def _timeout_seconds(timeout_s: float | None) -> float:
    if timeout_s is None:
        timeout_s = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    if not timeout_s > 0:
        raise InvalidArgumentError(f"timeout_s must be > 0 seconds; got {timeout_s!r}")
    return float(timeout_s)


def init_distributed(
    backend: str | None = None,
    timeout_s: float | None = None,
    *,
    rank: int | None = None,
    world_size: int | None = None,
    init_method: str | None = None,
) -> bool:
    """Join the process group that ``torchrun`` (or a spawner) describes, with a timeout.

    Reads ``RANK``/``WORLD_SIZE``/``MASTER_ADDR``/``MASTER_PORT`` from the environment unless
    ``rank``/``world_size``/``init_method`` are given. Does nothing (returns False) when the
    environment names no world size > 1 and none is passed; returns True when the group is
    initialised (already or now).

    Args:
        backend: ``"gloo"`` (CPU), ``"nccl"`` (CUDA); None picks nccl when CUDA is available.
        timeout_s: seconds a collective may wait for the other ranks before failing
            (default ``$TRIPLETLAB_DIST_TIMEOUT`` or 300).
        rank, world_size, init_method: explicit values instead of the environment.

    Example:
        >>> init_distributed()  # a plain `python` run: not distributed
        False
    """
    if dist.is_available() and dist.is_initialized():
        return True
    if world_size is None:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return False
    if not dist.is_available():  # pragma: no cover - torch builds without distributed
        raise DistributedError("this torch build has no torch.distributed support")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if rank is None:
        rank = int(os.environ.get("RANK", "0"))
    timeout = datetime.timedelta(seconds=_timeout_seconds(timeout_s))
    try:
        dist.init_process_group(
            backend=backend,
            init_method=init_method,
            rank=rank,
            world_size=world_size,
            timeout=timeout,
        )
    except (RuntimeError, ValueError) as exc:
        raise DistributedError(
            f"rank {rank} of {world_size}: could not join the process group "
            f"(backend {backend!r}, timeout {timeout.total_seconds():g} s): {exc}"
        ) from exc
    return True


def destroy_distributed() -> None:
    """Leave the process group (no-op when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _collective(name: str, fn: Callable[[], object], group: dist.ProcessGroup | None) -> None:
    """Run a collective; turn a dead or silent peer into a DistributedError."""
    try:
        fn()
    except RuntimeError as exc:  # DistBackendError and gloo's timeouts are RuntimeErrors
        raise DistributedError(
            f"rank {get_rank()} of {get_world_size(group)}: {name} failed — another rank "
            f"died or did not answer within the timeout ({exc})"
        ) from exc


def barrier(group: dist.ProcessGroup | None = None) -> None:
    """Wait for all ranks (no-op when not distributed); raises DistributedError on failure."""
    if get_world_size(group) > 1:
        _collective("barrier", lambda: dist.barrier(group=group), group)


def all_reduce_sum(tensor: Tensor, group: dist.ProcessGroup | None = None) -> Tensor:
    """Sum of ``tensor`` over all ranks (a new tensor, no gradient; ``tensor`` itself when K=1)."""
    if get_world_size(group) == 1:
        return tensor
    out = tensor.detach().clone()
    _collective("all_reduce", lambda: dist.all_reduce(out, group=group), group)
    return out


def global_mean(value: Tensor, group: dist.ProcessGroup | None = None) -> Tensor:
    """Mean of a detached value over all ranks, e.g. the global loss from the per-rank ``ℓ_r``."""
    return all_reduce_sum(value.detach(), group) / get_world_size(group)


# --- gathering ------------------------------------------------------------------------------


def _gather_sizes(n: int, device: torch.device, group: dist.ProcessGroup | None) -> list[int]:
    world = get_world_size(group)
    local = torch.tensor([n], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(local) for _ in range(world)]
    _collective(
        "all_gather (batch sizes)", lambda: dist.all_gather(sizes, local, group=group), group
    )
    return [int(s) for s in sizes]


def _gather_padded(tensor: Tensor, sizes: list[int], group: dist.ProcessGroup | None) -> Tensor:
    """all_gather along dim 0 for ranks of different sizes: pad to the largest, trim after."""
    largest = max(sizes)
    padded = tensor.detach().contiguous()
    if tensor.shape[0] < largest:
        pad = padded.new_zeros((largest - tensor.shape[0], *tensor.shape[1:]))
        padded = torch.cat([padded, pad])
    parts = [torch.empty_like(padded) for _ in sizes]
    _collective("all_gather", lambda: dist.all_gather(parts, padded, group=group), group)
    return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: concatenate every rank's rows. Backward: each rank gets the sum over all ranks
    of the gradients with respect to its own rows (an all_reduce, then its slice)."""

    @staticmethod
    def forward(ctx, tensor: Tensor, group: dist.ProcessGroup | None, sizes: list[int]) -> Tensor:  # type: ignore[override]
        rank = get_rank(group)
        ctx.group = group
        ctx.start = sum(sizes[:rank])
        ctx.stop = ctx.start + sizes[rank]
        return _gather_padded(tensor, sizes, group)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        # gloo has no reduce_scatter for uneven sizes; an all_reduce of the gathered gradient
        # (K·B·D numbers) is supported by every backend and is cheap next to the loss.
        grad = grad_output.contiguous().clone()
        _collective(
            "all_reduce (gradients of the gather)",
            lambda: dist.all_reduce(grad, group=ctx.group),
            ctx.group,
        )
        return grad[ctx.start : ctx.stop], None, None


def all_gather_with_grad(tensor: Tensor, group: dist.ProcessGroup | None = None) -> Tensor:
    """Concatenate ``tensor`` (N_r, …) from all ranks along dim 0, keeping the autograd graph.

    The rows of rank ``r`` come at offset ``Σ_{j<r} N_j``; ranks may have different ``N_r``.
    Backward: the gradient of a gathered row, summed over all ranks, reaches the rank that owns
    the row — so ``Σ_r loss_r`` is differentiated exactly as if computed in one process.
    Returns ``tensor`` unchanged when not distributed.

    Example:
        >>> x = torch.randn(4, 8, requires_grad=True)
        >>> all_gather_with_grad(x) is x  # one process
        True
    """
    if get_world_size(group) == 1:
        return tensor
    sizes = _gather_sizes(tensor.shape[0], tensor.device, group)
    return _AllGatherWithGrad.apply(tensor, group, sizes)


def all_gather_no_grad(tensor: Tensor, group: dist.ProcessGroup | None = None) -> Tensor:
    """Concatenate ``tensor`` (labels, ids, detached values) from all ranks along dim 0."""
    if get_world_size(group) == 1:
        return tensor
    sizes = _gather_sizes(tensor.shape[0], tensor.device, group)
    return _gather_padded(tensor, sizes, group)


@dataclass(frozen=True)
class GatheredBatch:
    """The global batch seen from one rank.

    Attributes:
        embeddings: (ΣN_r, D) all ranks' embeddings, differentiable back to their owners.
        labels: (ΣN_r,) their labels.
        offset: index of this rank's first row in the global batch; local row ``i`` is global
            row ``offset + i`` (needed to exclude an anchor from its own positives).
    """

    embeddings: Tensor
    labels: Tensor
    offset: int

    def local_indices(self, n: int) -> Tensor:
        """Global indices of this rank's ``n`` rows."""
        return torch.arange(self.offset, self.offset + n, device=self.labels.device)


def gather_batch(
    embeddings: Tensor, labels: Tensor, group: dist.ProcessGroup | None = None
) -> GatheredBatch:
    """Gather embeddings (with gradient) and labels from all ranks.

    Example:
        >>> batch = gather_batch(torch.randn(4, 8), torch.tensor([0, 0, 1, 1]))
        >>> batch.embeddings.shape, batch.offset
        (torch.Size([4, 8]), 0)
    """
    if embeddings.shape[0] != labels.shape[0]:
        raise InvalidArgumentError(
            f"embeddings and labels must have the same length; got {embeddings.shape[0]} "
            f"and {labels.shape[0]}"
        )
    if get_world_size(group) == 1:
        return GatheredBatch(embeddings, labels, 0)
    sizes = _gather_sizes(embeddings.shape[0], embeddings.device, group)
    offset = sum(sizes[: get_rank(group)])
    gathered = _AllGatherWithGrad.apply(embeddings, group, sizes)
    return GatheredBatch(gathered, _gather_padded(labels, sizes, group), offset)


# --- the global loss ------------------------------------------------------------------------

PartialLoss = Callable[[Tensor, Tensor, GatheredBatch], tuple[Tensor, Tensor]]
"""``(embeddings, labels, gathered) -> (total, normaliser)``: the *sum* of the per-element
losses whose anchor is one of the local rows, and this rank's share of the reduction's
normaliser (valid count for "mean", active count for "mean_active", 1 on rank 0 / 0 elsewhere
for "sum")."""


def global_loss(
    partial_loss: PartialLoss,
    embeddings: Tensor,
    labels: Tensor,
    *,
    group: dist.ProcessGroup | None = None,
    scale_by_world_size: bool = True,
) -> Tensor:
    """This rank's share ``ℓ_r = K·S_r / N`` of a loss over the global batch (see module doc).

    ``partial_loss`` computes, for the local anchors against the gathered reference set, the
    sum ``S_r`` and the local normaliser ``N_r``; ``N = Σ_r N_r`` is all-reduced (no gradient)
    and clamped at 1, so an empty or inactive global batch gives 0, never NaN.

    Args:
        partial_loss: see :data:`PartialLoss`.
        embeddings: (B, D) local embeddings (anchors).
        labels: (B,) local labels.
        group: the process group (default: the world).
        scale_by_world_size: multiply by ``K`` so that DDP's gradient *average* equals the
            single-process gradient; False when gradients are summed over ranks.

    Returns:
        A 0-dim tensor. When not distributed: ``S / max(N, 1)``, the ordinary loss.
    """
    gathered = gather_batch(embeddings, labels, group)
    total, normaliser = partial_loss(embeddings, labels, gathered)
    normaliser = torch.as_tensor(normaliser, dtype=total.dtype, device=total.device).detach()
    denominator = all_reduce_sum(normaliser, group).clamp_min(1)
    scale = get_world_size(group) if scale_by_world_size else 1
    return total * scale / denominator


def global_batch_loss(
    loss_fn: Callable[..., Tensor | tuple[Tensor, dict[str, Tensor]]],
    embeddings: Tensor,
    labels: Tensor,
    *,
    group: dist.ProcessGroup | None = None,
    **loss_kwargs: object,
) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
    """Any batch loss over the global batch: ``loss_fn(gathered_embeddings, gathered_labels)``.

    Every rank evaluates the same loss ``L`` on the concatenated ``K·B`` batch (the gathered
    rows keep their gradient path to their owner). The gradient of the local rows is then
    ``K·∂L/∂x_r`` (each of the K identical copies of ``L`` contributes ``∂L/∂x_r``, summed by
    the gather's backward), and DDP's average over the K ranks gives exactly ``∂L/∂θ``, the
    single-process gradient — so no rescaling is needed, every reduction (``mean``,
    ``mean_active``, ``sum``) and every statistic is exact, and the returned value *is* the
    global loss on every rank.

    The price: the loss itself (not the network) is computed K times, at the global batch size,
    O((K·B)²) per rank instead of O(B·K·B) for :func:`global_loss` with local anchors; for the
    batch losses this is milliseconds next to the forward pass of a network.

    Args:
        loss_fn: a batch loss ``loss_fn(embeddings, labels, **loss_kwargs)`` (a function of
            :mod:`tripletlab.functional` or a loss module).
        embeddings, labels: the local (B, D) batch and its (B,) labels.
        group: the process group (default: the world).

    Example:
        >>> from tripletlab.functional.contrastive import batch_contrastive_loss
        >>> emb = torch.tensor([[0.0, 0.0], [0.0, 0.5], [3.0, 4.0]])
        >>> global_batch_loss(batch_contrastive_loss, emb, torch.tensor([0, 0, 1]), reduction="sum")
        tensor(0.2500)
    """
    gathered = gather_batch(embeddings, labels, group)
    return loss_fn(gathered.embeddings, gathered.labels, **loss_kwargs)


class GlobalBatchLoss:
    """A batch loss that sees the global batch: ``global_batch_loss(loss, embeddings, labels)``.

    Wrap the loss of a single-process run to train under DDP with global mining; keyword
    arguments (e.g. ``return_stats=True``) are passed through. With one process it is the
    loss itself.

    Example:
        >>> from tripletlab.functional import batch_hard_triplet_loss
        >>> loss = GlobalBatchLoss(batch_hard_triplet_loss)
        >>> x = torch.randn(8, 4, requires_grad=True)
        >>> loss(x, torch.arange(8) % 2).backward()
    """

    def __init__(self, loss: Callable[..., Any]) -> None:
        if not callable(loss):
            raise ArgumentTypeError(f"loss must be callable; got {type(loss).__name__}")
        self.loss = loss

    def __repr__(self) -> str:
        return f"GlobalBatchLoss({self.loss!r})"

    def __call__(self, embeddings: Tensor, labels: Tensor, **kwargs: Any) -> Any:
        return global_batch_loss(self.loss, embeddings, labels, **kwargs)
