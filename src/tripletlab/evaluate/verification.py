"""Face-verification metrics: ROC of same/different pairs, AUC, best threshold, TAR at FAR.

A verification system declares two samples "same identity" when their embedding distance
is at most a threshold τ. On a set of labelled pairs (positive: same label, negative:
different labels):

* TAR(τ) (true accept rate, the ROC's TPR) = fraction of positive pairs with d ≤ τ,
* FAR(τ) (false accept rate, the FPR)      = fraction of negative pairs with d ≤ τ,
* AUC = area under the ROC curve (TAR against FAR over all τ),
* best accuracy = max_τ (TAR·P + (1 − FAR)·N) / (P + N), and the τ that reaches it,
* TAR@FAR=f = the largest TAR over thresholds whose FAR ≤ f (FaceNet's VAL@FAR,
  Schroff et al. 2015, §5.1).

The pairs are drawn from the evaluated set itself, seeded and balanced: as many positive
as negative pairs, each positive a random sample and a random other member of its class,
each negative a random sample and a random sample of another class. The ROC comes from
scikit-learn's ``roc_curve`` (``drop_intermediate=False``, so TAR@FAR is exact).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve
from torch import Tensor

from tripletlab.errors import DataError, InvalidArgumentError
from tripletlab.functional.distances import METRICS, row_distance
from tripletlab.validation import check_choice, check_embeddings, check_labels

FARS: tuple[float, ...] = (1e-3, 1e-2)
_MAX_CURVE_POINTS = 512


def sample_pairs(labels: Tensor, n_pairs: int, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Seeded balanced pairs: ``n_pairs`` positive and ``n_pairs`` negative.

    Args:
        labels: (N,) integer labels; at least one class with two members and two classes.
        n_pairs: pairs of each kind (drawn with replacement).
        seed: the sampling seed.

    Returns:
        ``(first, second, is_positive)``: (2·n_pairs,) index tensors and a bool tensor.

    Example:
        >>> first, second, same = sample_pairs(torch.tensor([0, 0, 1, 1]), n_pairs=3)
        >>> bool((torch.tensor([0, 0, 1, 1])[first] == torch.tensor([0, 0, 1, 1])[second]).eq(same).all())
        True
    """
    if isinstance(n_pairs, bool) or not isinstance(n_pairs, int) or n_pairs < 1:
        raise InvalidArgumentError(f"n_pairs must be a positive int; got {n_pairs!r}")
    labels = labels.cpu().long()
    values, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    if len(values) < 2:
        raise DataError("verification needs at least two classes for negative pairs")
    if int(counts.max()) < 2:
        raise DataError("verification needs a class with at least two samples for positive pairs")
    generator = torch.Generator().manual_seed(seed)
    order = torch.argsort(inverse, stable=True)  # samples grouped by class
    starts = torch.cumsum(counts, 0) - counts

    # Positive: a random sample of a class with ≥ 2 members, then another member of its class.
    has_pair = counts[inverse] >= 2
    candidates = has_pair.nonzero().squeeze(1)
    a = candidates[torch.randint(len(candidates), (n_pairs,), generator=generator)]
    size = counts[inverse[a]]
    offset = torch.randint(2**62, (n_pairs,), generator=generator) % (size - 1)
    own = _position_in_class(order, inverse, starts)[a]
    offset = offset + (offset >= own).long()  # skip the sample itself
    p = order[starts[inverse[a]] + offset]

    # Negative: a random sample, then a random sample outside its class.
    n_first = torch.randint(len(labels), (n_pairs,), generator=generator)
    outside = len(labels) - counts[inverse[n_first]]
    pick = torch.randint(2**62, (n_pairs,), generator=generator) % outside
    # Positions in ``order`` outside the class block [start, start + count).
    block_start = starts[inverse[n_first]]
    pick = pick + (pick >= block_start).long() * counts[inverse[n_first]]
    n_second = order[pick]

    first = torch.cat([a, n_first])
    second = torch.cat([p, n_second])
    same = torch.cat(
        [torch.ones(n_pairs, dtype=torch.bool), torch.zeros(n_pairs, dtype=torch.bool)]
    )
    return first, second, same


def _position_in_class(order: Tensor, inverse: Tensor, starts: Tensor) -> Tensor:
    position = torch.empty_like(order)
    position[order] = torch.arange(len(order)) - starts[inverse[order]]
    return position


def evaluate_verification(
    embeddings: Tensor,
    labels: Tensor,
    *,
    metric: str = "sqeuclidean",
    n_pairs: int = 10_000,
    seed: int = 0,
    fars: tuple[float, ...] = FARS,
) -> dict[str, Any]:
    """ROC, AUC, best-accuracy threshold and TAR@FAR of seeded balanced pairs.

    Args:
        embeddings: (N, D) float embeddings.
        labels: (N,) integer labels.
        metric: distance between the two embeddings of a pair.
        n_pairs: positive pairs and negative pairs each (2·n_pairs in total).
        seed: seed of the pair sampling.
        fars: the false accept rates at which TAR is reported.

    Returns:
        dict with ``auc``, ``best_accuracy``, ``best_threshold`` (a distance: d ≤ τ means
        "same"), ``tar_at_far_{f:g}`` for each f (e.g. ``tar_at_far_0.001``),
        ``n_positive_pairs``, ``n_negative_pairs`` and the curve as lists ``fpr``, ``tpr``,
        ``thresholds`` (thinned to at most 512 points for reports).

    Example:
        >>> x = torch.tensor([[0.0], [0.1], [5.0], [5.2]])
        >>> result = evaluate_verification(x, torch.tensor([0, 0, 1, 1]), n_pairs=50)
        >>> result["auc"], result["best_accuracy"]
        (1.0, 1.0)
    """
    check_choice(metric, "metric", METRICS)
    embeddings = check_embeddings(embeddings, "embeddings")
    labels = check_labels(labels, len(embeddings))
    first, second, same = sample_pairs(labels, n_pairs, seed)
    device = embeddings.device
    x = embeddings.detach().to(torch.float64)
    dist = row_distance(x[first.to(device)], x[second.to(device)], metric).cpu().numpy()
    truth = same.numpy()
    # Scores must grow with "sameness": the negated distance.
    fpr, tpr, thresholds = roc_curve(truth, -dist, drop_intermediate=False)
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    accuracy = (tpr * n_pos + (1 - fpr) * n_neg) / (n_pos + n_neg)
    best = int(np.argmax(accuracy))
    result: dict[str, Any] = {
        "auc": float(roc_auc_score(truth, -dist)),
        "best_accuracy": float(accuracy[best]),
        "best_threshold": float(-thresholds[best]) if np.isfinite(thresholds[best]) else 0.0,
        "n_positive_pairs": n_pos,
        "n_negative_pairs": n_neg,
    }
    for far in fars:
        allowed = fpr <= far
        result[f"tar_at_far_{far:g}"] = float(tpr[allowed].max()) if allowed.any() else 0.0
    keep = _thin(len(fpr))
    result["fpr"] = fpr[keep].tolist()
    result["tpr"] = tpr[keep].tolist()
    result["thresholds"] = [float(-t) if np.isfinite(t) else None for t in thresholds[keep]]
    return result


def _thin(n: int) -> np.ndarray:
    if n <= _MAX_CURVE_POINTS:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, _MAX_CURVE_POINTS).round().astype(int))
