"""How the losses meet ``torch.compile``: they run eagerly, as one clean break in the graph.

A batch loss reads a shape from the data (K, the largest number of positives), checks its
input on the host (NaN/Inf and the overflow scale: one synchronisation), searches a few tied
distance entries (``nonzero``) and calls custom autograd Functions with chunked loops: traced
by dynamo that is 8–10 graph breaks and guards that can recompile when the labels change.
Disabled for dynamo, the loss is a single break: the user's network before it and the
optimizer after it are compiled as usual, nothing inside the loss is guarded, so a fixed
batch shape never recompiles, and the loss runs at its eager speed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable)


def eager_under_compile(fn: F) -> F:
    """``fn`` unchanged in eager mode; skipped (run eagerly) by ``torch.compile``."""
    return torch.compiler.disable(fn, recursive=True)  # type: ignore[return-value]
