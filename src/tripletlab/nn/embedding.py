"""Computing embeddings with a trained network: :func:`embed` and :func:`l2_normalize`.

:func:`embed` is the one place where a model turns a dataset into embeddings — used by the
trainer's validation, the pipeline's ``embed``/``evaluate``/``index`` verbs and the
scikit-learn estimator: eval mode (dropout off, batch-norm statistics frozen) restored
afterwards, no autograd graph, fixed-size chunks so that memory stays bounded, results on
the CPU.

Example:
    >>> import torch
    >>> model = torch.nn.Linear(3, 2)
    >>> norms = embed(model, torch.randn(5, 3), batch_size=2, normalize=True).norm(dim=1)
    >>> bool(torch.allclose(norms, torch.ones(5)))
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DEFAULT_EMBED_BATCH", "embed", "l2_normalize"]

#: Rows per forward pass when embedding a dataset: large enough to amortise the per-call
#: overhead of small networks, small enough for image CNN activations to fit in memory.
DEFAULT_EMBED_BATCH = 1024


def l2_normalize(embeddings: Tensor) -> Tensor:
    """Rows scaled to unit L2 norm, ``x / max(‖x‖₂, 1e-12)`` (FaceNet's unit sphere).

    Shapes: (N, D) → (N, D); a zero row stays zero (no NaN).

    Example:
        >>> l2_normalize(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))
        tensor([[0.6000, 0.8000],
                [0.0000, 0.0000]])
    """
    return F.normalize(embeddings, dim=1)


@torch.no_grad()
def embed(
    model: nn.Module,
    inputs: Tensor,
    batch_size: int = DEFAULT_EMBED_BATCH,
    *,
    normalize: bool = False,
    device: str | torch.device | None = None,
) -> Tensor:
    """Embeddings (N, D) of ``inputs`` (N, ...) on the CPU, computed in eval mode.

    Args:
        model: maps a batch (B, ...) to (B, D).
        inputs: the samples; moved to ``device`` chunk by chunk.
        batch_size: rows per forward pass.
        normalize: L2-normalise each embedding (:func:`l2_normalize`).
        device: where the model runs (default: the device of its first parameter, else CPU).

    Returns:
        A float tensor (N, D); (0, 0) when ``inputs`` is empty.
    """
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        chunks = []
        for start in range(0, len(inputs), batch_size):
            out = model(inputs[start : start + batch_size].to(device))
            chunks.append((l2_normalize(out) if normalize else out).cpu())
    finally:
        model.train(was_training)
    return torch.cat(chunks) if chunks else torch.empty(0, 0)
