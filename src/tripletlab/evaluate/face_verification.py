"""The LFW 10-fold verification protocol: accuracy mean ± std and TAR@FAR over folds.

For labelled pairs split into F folds (LFW's ``pairs.txt``: 10 folds of 300 matched and 300
mismatched pairs; Huang et al. 2007, "unrestricted, labeled outside data" protocol as used by
FaceNet and insightface):

* for each fold k, the threshold τ_k maximising accuracy on the *other* F−1 folds is chosen
  (candidates: below every distance, the midpoints between consecutive distinct distances,
  and the largest distance; ties go to the smallest τ), and the accuracy of ``d ≤ τ_k`` is
  measured on fold k;
* accuracy = mean ± standard deviation (population, ``numpy.std``, as facenet and insightface
  report it) of the F fold accuracies;
* TAR@FAR=f: per fold, τ chosen at FAR f on the other folds' mismatched pairs
  (:func:`~tripletlab.evaluate.thresholds.threshold_at_far`), TAR and FAR measured on fold k;
  mean ± std over folds (facenet's ``calculate_val``), and the pooled ROC's exact TAR at
  FAR ≤ f for comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tripletlab.errors import DataError
from tripletlab.evaluate.thresholds import accept_rate, tar_at_far, threshold_at_far
from tripletlab.functional._validation import check_choice, check_embeddings
from tripletlab.functional.distances import METRICS, row_distance

FARS: tuple[float, ...] = (1e-3, 1e-2)


def pair_distances(
    embeddings: Tensor, first: np.ndarray, second: np.ndarray, metric: str = "euclidean"
) -> np.ndarray:
    """Distances of the pairs (first[i], second[i]) of ``embeddings`` rows, in float64.

    Example:
        >>> x = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
        >>> pair_distances(x, np.array([0]), np.array([1])).tolist()
        [5.0]
    """
    check_choice(metric, "metric", METRICS)
    x = check_embeddings(embeddings, "embeddings").detach().to(torch.float64)
    a = torch.as_tensor(np.asarray(first, dtype=np.int64), device=x.device)
    b = torch.as_tensor(np.asarray(second, dtype=np.int64), device=x.device)
    return row_distance(x[a], x[b], metric).cpu().numpy()


def best_accuracy_threshold(distances: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(τ, accuracy) maximising the accuracy of ``d ≤ τ`` (candidates in the module docstring).

    Example:
        >>> best_accuracy_threshold(np.array([0.2, 0.5, 0.35, 0.6]), np.array([1, 1, 0, 0], bool))
        (0.275, 0.75)
    """
    distances = np.asarray(distances, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if len(distances) == 0:
        raise DataError("no pairs to choose a verification threshold on")
    values = np.unique(distances)
    below = np.nextafter(values[0], -np.inf)
    candidates = np.concatenate([[below], (values[:-1] + values[1:]) / 2, [values[-1]]])
    positives = np.sort(distances[same])
    negatives = np.sort(distances[~same])
    accepted_pos = np.searchsorted(positives, candidates, side="right")
    rejected_neg = len(negatives) - np.searchsorted(negatives, candidates, side="right")
    accuracy = (accepted_pos + rejected_neg) / len(distances)
    best = int(np.argmax(accuracy))  # the first maximum: the smallest threshold
    return float(candidates[best]), float(accuracy[best])


def ten_fold_verification(
    distances: np.ndarray,
    same: np.ndarray,
    folds: np.ndarray,
    *,
    fars: Sequence[float] = FARS,
) -> dict[str, Any]:
    """The fold protocol on pair distances (see the module docstring).

    Args:
        distances: (P,) pair distances.
        same: (P,) bool, True for matched pairs.
        folds: (P,) fold of each pair (at least two folds).
        fars: the FARs of TAR@FAR.

    Returns:
        dict with ``accuracy_mean``, ``accuracy_std``, ``folds`` (list of per-fold dicts:
        ``fold``, ``threshold``, ``train_accuracy``, ``accuracy``, ``n_pairs``) and for each f:
        ``tar_at_far_{f:g}_mean``, ``…_std``, ``far_at_far_{f:g}_mean`` (achieved on the test
        folds) and ``tar_at_far_{f:g}_pooled``.

    Example:
        >>> d = np.array([0.1, 0.4, 0.3, 0.9, 0.2, 0.5, 0.6, 0.35])
        >>> same = np.array([1, 1, 0, 0, 1, 1, 0, 0], bool)
        >>> r = ten_fold_verification(d, same, np.repeat([0, 1], 4), fars=())
        >>> r["accuracy_mean"], r["accuracy_std"], [f["threshold"] for f in r["folds"]]
        (0.75, 0.0, [0.275, 0.2])
    """
    distances = np.asarray(distances, dtype=np.float64).reshape(-1)
    same = np.asarray(same, dtype=bool).reshape(-1)
    folds = np.asarray(folds).reshape(-1)
    if not len(distances) == len(same) == len(folds):
        raise ValueError("distances, same and folds must have the same length")
    fold_ids = np.unique(folds)
    if len(fold_ids) < 2:
        raise DataError("the fold protocol needs at least two folds of pairs")
    if not np.isfinite(distances).all():
        raise DataError("pair distances contain NaN or Inf")
    rows = []
    for fold in fold_ids:
        test, train = folds == fold, folds != fold
        threshold, train_accuracy = best_accuracy_threshold(distances[train], same[train])
        correct = (distances[test] <= threshold) == same[test]
        rows.append(
            {
                "fold": int(fold),
                "threshold": threshold,
                "train_accuracy": train_accuracy,
                "accuracy": float(correct.mean()),
                "n_pairs": int(test.sum()),
            }
        )
    accuracies = np.array([r["accuracy"] for r in rows])
    result: dict[str, Any] = {
        "accuracy_mean": float(accuracies.mean()),
        "accuracy_std": float(accuracies.std()),
        "folds": rows,
        "n_pairs": len(distances),
        "n_folds": len(fold_ids),
    }
    for far in fars:
        result.update(_tar_over_folds(distances, same, folds, fold_ids, far))
    return result


def _tar_over_folds(
    distances: np.ndarray, same: np.ndarray, folds: np.ndarray, fold_ids: np.ndarray, far: float
) -> dict[str, float]:
    tars, fars = [], []
    for fold in fold_ids:
        test, train = folds == fold, folds != fold
        impostors = distances[train & ~same]
        if len(impostors) == 0 or not (test & same).any() or not (test & ~same).any():
            raise DataError(f"fold {fold} lacks matched or mismatched pairs for TAR@FAR")
        choice = threshold_at_far(impostors, far)
        tars.append(accept_rate(distances[test & same], choice.threshold))
        fars.append(accept_rate(distances[test & ~same], choice.threshold))
    pooled = tar_at_far(distances[same], distances[~same], far)
    key = f"far_{far:g}"
    return {
        f"tar_at_{key}_mean": float(np.mean(tars)),
        f"tar_at_{key}_std": float(np.std(tars)),
        f"far_at_{key}_mean": float(np.mean(fars)),
        f"tar_at_{key}_pooled": pooled["tar"],
    }
