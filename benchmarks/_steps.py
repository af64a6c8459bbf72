"""The loss calls compared by the benchmarks, one factory for every implementation.

Every step is ``step(embeddings, labels) -> loss`` on the same inputs and the same definition
(margin 0.2, the named metric), so that equal definitions give equal numbers:

* ``tl_*``  — tripletlab's batch-all (mean over active triplets), batch-hard (mean over
  anchors) and FaceNet semi-hard (TF-Addons fallback "easiest", mean over pairs);
* ``st_*``  — sentence-transformers 6.x ``BatchAllTripletLoss.batch_all_triplet_loss``,
  ``BatchHardTripletLoss.batch_hard_triplet_loss`` and
  ``BatchSemiHardTripletLoss.batch_semi_hard_triplet_loss`` called on tensors with a small
  object holding ``distance_metric`` and the margin (no model);
* ``pml_*`` — pytorch-metric-learning ``TripletMarginLoss`` (every triplet, or with a miner),
  ``LpDistance(normalize_embeddings=False)`` with ``power=2`` for the squared metric and
  ``power=1`` for the euclidean one, ``CosineSimilarity`` for cosine;
* ``floor`` — the B×B squared-distance matrix forward+backward (what any batch loss pays).
"""

from __future__ import annotations

from types import SimpleNamespace

MARGIN = 0.2
TL_METHODS = ("floor", "tl_all", "tl_hard", "tl_semi")
ST_METHODS = ("st_all", "st_hard", "st_semi")
PML_METHODS = (
    "pml_all",
    "pml_miner_all",
    "pml_miner_semihard",
    "pml_miner_hard",
    "pml_batch_hard",
)
#: The peers that compute the same loss as each tripletlab method (same number expected).
SAME_LOSS_PEERS = {
    "tl_all": ("st_all", "pml_all", "pml_miner_all"),
    "tl_hard": ("st_hard", "pml_batch_hard"),
    "tl_semi": ("st_semi",),
}


def loss_step(method: str, metric: str = "sqeuclidean", margin: float = MARGIN):
    """``step(x, y) -> loss`` for ``method`` with the given metric."""
    import torch

    if method == "floor":

        def floor(x, y):
            sq = (x * x).sum(1)
            return torch.addmm(sq[:, None] + sq[None, :], x, x.T, alpha=-2).clamp_min(0).sum()

        return floor
    if method.startswith("tl_"):
        return _tripletlab_step(method, metric, margin)
    if method.startswith("st_"):
        return _sentence_transformers_step(method, metric, margin)
    return _pml_step(method, metric, margin)


def _tripletlab_step(method: str, metric: str, margin: float):
    from tripletlab.functional import (
        batch_all_triplet_loss,
        batch_hard_triplet_loss,
        batch_semi_hard_triplet_loss,
    )

    if method == "tl_all":
        return lambda x, y: batch_all_triplet_loss(x, y, margin=margin, metric=metric)
    if method == "tl_hard":
        return lambda x, y: batch_hard_triplet_loss(x, y, margin=margin, metric=metric)
    return lambda x, y: batch_semi_hard_triplet_loss(
        x, y, margin=margin, metric=metric, fallback="easiest"
    )


def _sentence_transformers_step(method: str, metric: str, margin: float):
    from sentence_transformers.sentence_transformer.losses.batch_all_triplet import (
        BatchAllTripletLoss,
    )
    from sentence_transformers.sentence_transformer.losses.batch_hard_triplet import (
        BatchHardTripletLoss,
        BatchHardTripletLossDistanceFunction,
    )
    from sentence_transformers.sentence_transformer.losses.batch_semi_hard_triplet import (
        BatchSemiHardTripletLoss,
    )

    functions = BatchHardTripletLossDistanceFunction
    if metric == "cosine":
        distance = functions.cosine_distance
    elif metric == "euclidean":
        distance = functions.euclidean_distance
    else:

        def distance(embeddings):
            return functions.euclidean_distance(embeddings, squared=True)

    holder = SimpleNamespace(distance_metric=distance, triplet_margin=margin, margin=margin)
    if method == "st_all":
        return lambda x, y: BatchAllTripletLoss.batch_all_triplet_loss(holder, y, x)
    if method == "st_hard":
        return lambda x, y: BatchHardTripletLoss.batch_hard_triplet_loss(holder, y, x)
    return lambda x, y: BatchSemiHardTripletLoss.batch_semi_hard_triplet_loss(holder, y, x)


def _pml_step(method: str, metric: str, margin: float):
    from pytorch_metric_learning import distances, losses, miners

    if metric == "cosine":
        distance = distances.CosineSimilarity()
    else:
        power = 2 if metric == "sqeuclidean" else 1
        distance = distances.LpDistance(power=power, normalize_embeddings=False)
    loss = losses.TripletMarginLoss(margin=margin, distance=distance)
    if method == "pml_all":
        return lambda x, y: loss(x, y)
    if method == "pml_batch_hard":
        miner = miners.BatchHardMiner(distance=distance)
    else:
        kind = method.removeprefix("pml_miner_")
        miner = miners.TripletMarginMiner(margin=margin, type_of_triplets=kind, distance=distance)
    return lambda x, y: loss(x, y, miner(x, y))
