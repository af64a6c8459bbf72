"""How much memory a run will need, estimated before it starts, and an early refusal.

A run that needs more memory than the machine has is killed by the kernel long after it
started (an ``--embedding-dim`` of 100 000 grew to 24 GB in the final evaluation, whose
verification pairs are (2·n_pairs, D) float64 arrays). :func:`estimate_run_memory` adds up
the largest allocations a run makes — parameters, gradients and optimiser state; a batch's
activations and distance matrices; the test split's embeddings, its N×N distance matrix and
the verification pairs of the trained and the raw-feature evaluation — and
:func:`check_run_memory` refuses, with one line naming the parts, a run whose estimate
exceeds the memory available (``MemAvailable`` of ``/proc/meminfo``; no check where that
cannot be read). The estimate is a lower bound of the peak: Python, torch and the data
themselves come on top.

Example:
    >>> parts = estimate_run_memory(parameters=10_000, batch=80, dim=32, in_features=64,
    ...                             n_test=360)
    >>> sorted(parts) == ["batch", "evaluation", "model and optimiser"]
    True
    >>> parts["model and optimiser"]  # weights, gradients, two Adam moments, float32
    160000
"""

from __future__ import annotations

import math
from pathlib import Path

from tripletlab.errors import ConfigError

__all__ = ["available_memory", "check_run_memory", "estimate_run_memory"]

FLOAT32, FLOAT64 = 4, 8
#: Copies of each parameter during training: weights, gradients, Adam's two moments.
PARAMETER_COPIES = 4
#: B×B matrices a batch loss keeps alive at once (distances, masks, gradients).
BATCH_MATRICES = 8
#: Copies of a layer's (B, width) activations kept for backward (input, output, gradient).
ACTIVATION_COPIES = 3
#: Verification pairs per side in the final evaluation (evaluate_embeddings' default).
VERIFICATION_PAIRS = 10_000
#: float64 (2·n_pairs, D) arrays alive at once in verification: both sides and their difference.
VERIFICATION_ARRAYS = 3


def estimate_run_memory(
    *, parameters: int, batch: int, dim: int, in_features: int, n_test: int
) -> dict[str, int]:
    """Bytes of the largest allocations of a run, by part (see the module docstring)."""
    pair_rows = 2 * VERIFICATION_PAIRS
    return {
        "model and optimiser": parameters * PARAMETER_COPIES * FLOAT32,
        "batch": batch * (in_features + dim) * ACTIVATION_COPIES * FLOAT32
        + batch * batch * BATCH_MATRICES * FLOAT32,
        "evaluation": n_test * dim * FLOAT32
        + n_test * n_test * FLOAT32
        + pair_rows * max(dim, in_features) * VERIFICATION_ARRAYS * FLOAT64,
    }


def available_memory() -> int | None:
    """Bytes the kernel says are available (``MemAvailable``), None if unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def check_run_memory(parts: dict[str, int], available: int | None) -> None:
    """ConfigError when the estimated total exceeds ``available`` bytes (None: no check)."""
    total = sum(parts.values())
    if available is None or total <= available:
        return
    detail = ", ".join(f"{name} {_gb(size)}" for name, size in parts.items())
    raise ConfigError(
        f"the run needs at least {_gb(total)} of memory ({detail}) but {_gb(available)} is "
        "available; lower model.embedding_dim (--embedding-dim), model.hidden or train.p×k"
    )


def parameter_count(model: object) -> int:
    """Number of parameters of a torch module (built on the meta device: no memory)."""
    return sum(math.prod(p.shape) for p in model.parameters())  # type: ignore[attr-defined]
