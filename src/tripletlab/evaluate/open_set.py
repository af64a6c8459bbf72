"""Open-set identification: who is this probe — or is it ``unknown``?

A probe is compared with a gallery of known identities; its best match (the nearest gallery
item) names the identity when its distance is ≤ τ, else the probe is *unknown*. Following the
open-set protocol of face identification (Phillips et al., FRVT; IJB-C's 1:N test):

* a *mated* probe's identity is in the gallery; a *non-mated* probe's is not;
* FPIR(τ) (false positive identification rate, the FAR of identification) = fraction of
  non-mated probes whose best match is within τ;
* DIR(τ) (detection and identification rate) = fraction of mated probes whose best match is
  of their identity *and* within τ;
* DIR@FAR=f: DIR at the τ chosen at FPIR f (:func:`~tripletlab.evaluate.thresholds.threshold_at_far`).

When no probe is non-mated (every identity is enrolled), the impostor score of a probe is
its best match among the gallery items of *other* identities — the distance it would have
if its identity were not enrolled (``impostors="leave_identity_out"``).

:func:`identification_threshold` chooses τ for a gallery index (search says ``unknown`` beyond
it) from the gallery itself by the same leave-identity-out rule, and
:func:`identify` applies it. All are computed in query chunks within ``memory_budget_bytes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from tripletlab.errors import DataError
from tripletlab.evaluate.knn import DEFAULT_MEMORY_BUDGET
from tripletlab.evaluate.ranking import distance_blocks
from tripletlab.evaluate.thresholds import ThresholdChoice, accept_rate, threshold_at_far

UNKNOWN = -1  #: the label :func:`identify` gives a probe whose best match is beyond τ
FARS: tuple[float, ...] = (0.01, 0.1)


class BestMatches(NamedTuple):
    """Per probe: the nearest gallery item, and the nearest of another identity.

    Attributes:
        nearest: (Q,) gallery index of the best match (ties: the smallest index).
        distance: (Q,) its distance.
        other_distance: (Q,) distance of the nearest gallery item whose label differs from
            the probe's (inf when there is none).
    """

    nearest: np.ndarray
    distance: np.ndarray
    other_distance: np.ndarray


def best_matches(
    probes: Tensor,
    probe_labels: np.ndarray,
    gallery: Tensor,
    gallery_labels: np.ndarray,
    *,
    metric: str = "euclidean",
    exclude_self: bool = False,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
) -> BestMatches:
    """Best match and best other-identity match of each probe (chunked over probes).

    ``exclude_self``: probe i is gallery item i and is skipped for itself.

    Example:
        >>> g = torch.tensor([[0.0], [1.0], [3.0]])
        >>> m = best_matches(torch.tensor([[0.9]]), np.array([5]), g, np.array([5, 6, 5]))
        >>> m.nearest.tolist(), m.other_distance.round(3).tolist()
        ([1], [0.1])
    """
    g_labels = torch.as_tensor(np.asarray(gallery_labels, dtype=np.int64))
    p_labels = np.asarray(probe_labels, dtype=np.int64)
    index, distance, other = [], [], []
    blocks = distance_blocks(
        probes, gallery, metric=metric, memory_budget_bytes=memory_budget_bytes
    )
    for start, block in blocks:
        block = block.double()
        if exclude_self:
            rows = torch.arange(len(block))
            block[rows, rows + start] = float("inf")
        nearest = torch.argmin(block, dim=1)  # the first minimum: the smallest index
        index.append(nearest.numpy())
        distance.append(block.gather(1, nearest[:, None]).squeeze(1).numpy())
        own = torch.as_tensor(p_labels[start : start + len(block)])[:, None] == g_labels[None, :]
        other.append(block.masked_fill(own, float("inf")).amin(dim=1).numpy())
    if not index:
        empty = np.zeros(0)
        return BestMatches(empty.astype(np.int64), empty, empty)
    return BestMatches(np.concatenate(index), np.concatenate(distance), np.concatenate(other))


def identification_threshold(
    gallery: Tensor,
    gallery_labels: np.ndarray,
    target_far: float,
    *,
    metric: str = "euclidean",
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
) -> ThresholdChoice:
    """τ at FPIR ``target_far`` for a gallery index, from the gallery itself.

    Each gallery item acts as a non-mated probe: its impostor score is its distance to the
    nearest item of another identity (its own identity left out). Needs two identities.

    Example:
        >>> g = torch.tensor([[0.0], [0.1], [5.0], [5.2], [9.0]])
        >>> c = identification_threshold(g, np.array([0, 0, 1, 1, 2]), 0.0)
        >>> round(c.threshold, 6), c.achieved_far   # just below the smallest impostor, 3.8
        (3.8, 0.0)
    """
    labels = np.asarray(gallery_labels)
    if len(np.unique(labels)) < 2:
        raise DataError("an identification threshold needs a gallery of at least two identities")
    matches = best_matches(
        gallery,
        labels,
        gallery,
        labels,
        metric=metric,
        exclude_self=True,
        memory_budget_bytes=memory_budget_bytes,
    )
    return threshold_at_far(matches.other_distance, target_far)


def identify(
    probes: Tensor,
    gallery: Tensor,
    gallery_labels: np.ndarray,
    threshold: float,
    *,
    metric: str = "euclidean",
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
) -> dict[str, np.ndarray]:
    """Label each probe with its best match's identity, or :data:`UNKNOWN` beyond ``threshold``.

    Returns:
        dict of (Q,) arrays: ``label`` (identity or −1), ``index`` (best gallery item, a row
        to trace back to its file), ``distance``, ``known`` (bool).

    Example:
        >>> g = torch.tensor([[0.0], [5.0]])
        >>> identify(torch.tensor([[0.2], [2.5]]), g, np.array([3, 4]), 1.0)["label"].tolist()
        [3, -1]
    """
    labels = np.asarray(gallery_labels, dtype=np.int64)
    dummy = np.full(len(probes), np.iinfo(np.int64).min)  # no probe label: "other" is unused
    matches = best_matches(
        probes, dummy, gallery, labels, metric=metric, memory_budget_bytes=memory_budget_bytes
    )
    known = matches.distance <= threshold
    return {
        "label": np.where(known, labels[matches.nearest], UNKNOWN),
        "index": matches.nearest,
        "distance": matches.distance,
        "known": known,
    }


def open_set_identification(
    probes: Tensor,
    probe_labels: np.ndarray,
    gallery: Tensor,
    gallery_labels: np.ndarray,
    *,
    fars: Sequence[float] = FARS,
    metric: str = "euclidean",
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
) -> dict[str, Any]:
    """DIR@FAR (see the module docstring) and the closed-set rank-1 of the mated probes.

    Returns:
        dict with ``rank_1`` (mated probes), ``n_mated``, ``n_non_mated``, ``impostors``
        (``"non_mated"`` or ``"leave_identity_out"``) and for each f ``dir_at_far_{f:g}``,
        ``threshold_at_far_{f:g}`` and ``achieved_far_{f:g}``.

    Example:
        >>> g = torch.tensor([[0.0], [5.0]])
        >>> p = torch.tensor([[0.1], [4.0], [9.0]])   # the third probe is not enrolled
        >>> r = open_set_identification(p, np.array([1, 2, 7]), g, np.array([1, 2]), fars=(0.0,))
        >>> r["dir_at_far_0"], r["threshold_at_far_0"] < 4.0, r["n_non_mated"]
        (1.0, True, 1)
    """
    probe_labels = np.asarray(probe_labels, dtype=np.int64)
    gallery_labels = np.asarray(gallery_labels, dtype=np.int64)
    mated = np.isin(probe_labels, gallery_labels)
    if not mated.any():
        raise DataError("no probe's identity is in the gallery: DIR is undefined")
    matches = best_matches(
        probes,
        probe_labels,
        gallery,
        gallery_labels,
        metric=metric,
        memory_budget_bytes=memory_budget_bytes,
    )
    if (~mated).any():
        impostors, source = matches.distance[~mated], "non_mated"
    else:
        impostors, source = (
            matches.other_distance[np.isfinite(matches.other_distance)],
            ("leave_identity_out"),
        )
    correct = gallery_labels[matches.nearest[mated]] == probe_labels[mated]
    result: dict[str, Any] = {
        "rank_1": float(correct.mean()),
        "n_mated": int(mated.sum()),
        "n_non_mated": int((~mated).sum()),
        "impostors": source,
    }
    for far in fars:
        choice = threshold_at_far(impostors, far)
        within = matches.distance[mated] <= choice.threshold
        result[f"dir_at_far_{far:g}"] = float((correct & within).mean())
        result[f"threshold_at_far_{far:g}"] = choice.threshold
        result[f"achieved_far_{far:g}"] = accept_rate(impostors, choice.threshold)
    return result
