"""Acceptance thresholds chosen at a target false accept rate (FAR) on impostor distances.

A system accepts a match when the distance d ≤ τ. Over n impostor distances (pairs of two
identities, or each unknown probe's best gallery match), FAR(τ) = |{d ≤ τ}| / n. The
threshold for a target FAR f is the *largest* τ with FAR(τ) ≤ f: with the impostor distances
sorted, d₍₁₎ ≤ … ≤ d₍ₙ₎, and m = ⌊f·n⌋ impostors allowed in, τ lies just below d₍ₘ₊₁₎ —
``numpy.nextafter(d₍ₘ₊₁₎, −∞)`` — so ties at d₍ₘ₊₁₎ stay out and the achieved FAR never
exceeds f (it is below f when ties or a small n make f unreachable; the achieved value is
returned so a report can say which FAR a threshold really has). With f ≥ 1 every impostor
is accepted: τ = d₍ₙ₎.

This is the threshold for *identification* (does the best match belong to the claimed
gallery identity, or is the probe ``unknown``?), as opposed to the best-accuracy threshold of
balanced verification pairs, which accepts far too many impostors when one identity is
picked out of many (FaceNet's VAL@FAR, Schroff et al. 2015; IJB-C's TAR@FAR and FPIR).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from tripletlab.errors import DataError


class ThresholdChoice(NamedTuple):
    """A distance threshold and the FAR it achieves on the impostors it was chosen on.

    Attributes:
        threshold: accept when distance ≤ threshold.
        target_far: the FAR asked for.
        achieved_far: |{impostor d ≤ threshold}| / n_impostors (≤ target_far).
        n_impostors: how many impostor distances it was chosen on.
    """

    threshold: float
    target_far: float
    achieved_far: float
    n_impostors: int


def threshold_at_far(impostor_distances: np.ndarray, target_far: float) -> ThresholdChoice:
    """The largest threshold whose FAR on ``impostor_distances`` is at most ``target_far``.

    Args:
        impostor_distances: (n,) distances of impostor comparisons (n ≥ 1, finite).
        target_far: in [0, 1].

    Raises:
        DataError: no impostor distances, or non-finite ones.
        ValueError: ``target_far`` outside [0, 1].

    Example:
        >>> choice = threshold_at_far(np.array([0.9, 0.5, 0.7, 0.3]), 0.25)
        >>> choice.achieved_far, choice.threshold < 0.5, choice.threshold > 0.3
        (0.25, True, True)
        >>> threshold_at_far(np.array([0.9, 0.5, 0.7, 0.3]), 0.1).achieved_far
        0.0
    """
    if isinstance(target_far, bool) or not isinstance(target_far, (int, float)):
        raise TypeError(f"target_far must be a number; got {type(target_far).__name__}")
    if not 0.0 <= target_far <= 1.0:
        raise ValueError(f"target_far must be in [0, 1]; got {target_far!r}")
    impostors = np.sort(np.asarray(impostor_distances, dtype=np.float64).reshape(-1))
    n = len(impostors)
    if n == 0:
        raise DataError("no impostor comparisons to choose a threshold on")
    if not np.isfinite(impostors).all():
        raise DataError("impostor distances contain NaN or Inf")
    allowed = min(n, math.floor(target_far * n + 1e-9))  # tolerance: 0.3 * 10 is 2.9999…
    if allowed >= n:
        threshold = float(impostors[-1])
    else:
        threshold = float(np.nextafter(impostors[allowed], -np.inf))
    achieved = float(np.searchsorted(impostors, threshold, side="right")) / n
    return ThresholdChoice(threshold, float(target_far), achieved, n)


def accept_rate(distances: np.ndarray, threshold: float) -> float:
    """Fraction of ``distances`` ≤ ``threshold`` (TAR on genuine pairs, FAR on impostors);
    NaN when there are none.

    Example:
        >>> accept_rate(np.array([0.1, 0.4, 0.6]), 0.5)
        0.6666666666666666
    """
    distances = np.asarray(distances, dtype=np.float64).reshape(-1)
    return float((distances <= threshold).mean()) if len(distances) else float("nan")


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, target_far: float) -> dict[str, float]:
    """TAR of genuine distances at the threshold chosen for ``target_far`` on the impostors.

    Example:
        >>> r = tar_at_far(np.array([0.1, 0.2, 0.8]), np.array([0.5, 0.6, 0.7, 0.9]), 0.25)
        >>> r["tar"], r["achieved_far"]
        (0.6666666666666666, 0.25)
    """
    choice = threshold_at_far(impostor, target_far)
    return {
        "tar": accept_rate(genuine, choice.threshold),
        "threshold": choice.threshold,
        "target_far": choice.target_far,
        "achieved_far": choice.achieved_far,
    }
