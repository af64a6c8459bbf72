"""Per-loss defaults: what ``--loss X`` alone means, as measured (collapse-safe).

``benchmarks/loss_defaults.py`` (``docs/drafts/loss_defaults.md``) trained every loss on the
bundled digits and a Fashion-MNIST subset: with the run's old shared defaults (squared
Euclidean, margin 0.2, hinge, L2-normalised) batch-hard collapsed in every run (d_an down to
0.74 % of its start, MAP@R 0.793 against 0.965 for batch-all) and the contrastive loss with
margin 0.2 fell below the raw pixels. Hermans et al.'s recipe — Euclidean distances, the soft
margin (margin 0, μ = 1) and unnormalised embeddings — trains batch-hard; margin 1.0 on the
unit sphere trains the contrastive loss. batch-all and semi-hard keep the old defaults.

A key the user sets (file or flag) always wins; only absent keys are filled in.

Reference: Hermans, Beyer & Leibe, "In Defense of the Triplet Loss for Person
Re-Identification", 2017.

Example:
    >>> apply_loss_defaults({"loss": {"name": "batch-hard", "metric": "sqeuclidean"}})
    {'loss': {'name': 'batch-hard', 'metric': 'sqeuclidean', 'margin': 0.0, 'smoothing': 1.0}, 'model': {'normalize': False}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_LOSS", "LOSS_DEFAULTS", "apply_loss_defaults"]

#: ``loss.name`` when unset.
DEFAULT_LOSS = "batch-all"

#: loss name → {"section.key": default}; the measured table of docs/drafts/loss_defaults.md.
LOSS_DEFAULTS: dict[str, dict[str, Any]] = {
    "batch-all": {
        "loss.metric": "sqeuclidean",
        "loss.margin": 0.2,
        "loss.smoothing": None,
        "model.normalize": True,
    },
    "batch-hard": {
        "loss.metric": "euclidean",
        "loss.margin": 0.0,
        "loss.smoothing": 1.0,
        "model.normalize": False,
    },
    "semi-hard": {
        "loss.metric": "sqeuclidean",
        "loss.margin": 0.2,
        "loss.smoothing": None,
        "model.normalize": True,
    },
    "contrastive": {
        "loss.metric": "euclidean",
        "loss.margin": 1.0,
        "loss.smoothing": None,
        "model.normalize": True,
    },
}


def apply_loss_defaults(values: Any) -> Any:
    """``values`` (a RunConfig's raw nested dict) with the unset keys of its loss filled in.

    Anything that is not a mapping, or names an unknown loss, is returned unchanged (the
    config's validation then reports it).
    """
    if not isinstance(values, Mapping):
        return values
    loss = values.get("loss", {})
    if not isinstance(loss, Mapping):
        return values
    defaults = LOSS_DEFAULTS.get(loss.get("name", DEFAULT_LOSS))
    if defaults is None:
        return values
    out = dict(values)
    for dotted, default in defaults.items():
        section, key = dotted.split(".")
        current = out.get(section, {})
        if not isinstance(current, Mapping):
            return values
        if key not in current:
            out[section] = {**current, key: default}
    return out
