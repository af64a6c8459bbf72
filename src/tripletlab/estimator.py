"""``TripletEmbedder``: a scikit-learn transformer that learns a metric embedding of tabular data.

``TripletEmbedder(...).fit(X, y)`` standardises the features, trains an MLP with a batch
triplet loss over P×K batches — the same :class:`~tripletlab.train.trainer.Trainer` as
``tripletlab train`` — and ``transform(X)`` returns the (N, ``embedding_dim``) embedding, in
which samples of one class lie close together. It drops into a scikit-learn ``Pipeline``
in front of a k-nearest-neighbour classifier or a clustering step.

scikit-learn's ``check_estimator`` passes (``tests/test_estimator.py`` runs every check of
``parametrize_with_checks``); the estimator's behaviour on the checks' edge cases:

* ``y`` is required (``requires_y`` tag) and is used as class labels (any hashable labels,
  encoded like a classifier's); a single class is refused (no negatives: nothing to learn).
* Output dtype follows the input: float32 in → float32 out, otherwise float64.
* Determinism: the same ``random_state`` gives the same embedding (``random_state=None``
  means seed 0, so repeated fits agree as scikit-learn's idempotence check expects).
* Every check of scikit-learn's ``parametrize_with_checks`` passes, ``check_array_api_input``
  included (the test suite sets ``SCIPY_ARRAY_API=1``, without which scikit-learn skips it);
  ``fit`` converts any input to NumPy first, so array-API (e.g. torch) inputs are accepted
  but not kept in their namespace.

Reference: Schroff, Kalenichenko & Philbin, "FaceNet", CVPR 2015 (triplet loss);
Hermans et al. 2017 (P×K batches).

Example:
    >>> from sklearn.datasets import load_iris
    >>> from tripletlab import TripletEmbedder
    >>> X, y = load_iris(return_X_y=True)
    >>> emb = TripletEmbedder(embedding_dim=4, epochs=5, random_state=0).fit(X, y)
    >>> emb.transform(X).shape
    (150, 4)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

__all__ = ["TripletEmbedder"]

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn

    def _validate_data(estimator: Any, X: Any, y: Any = "no_validation", **kwargs: Any) -> Any:
        return estimator._validate_data(X, y, **kwargs)


class TripletEmbedder(TransformerMixin, BaseEstimator):
    """Learn an embedding of (N, F) features in which classes cluster (triplet loss).

    Args:
        embedding_dim: output dimension D.
        hidden: widths of the MLP's hidden layers (``()``: a linear embedding).
        activation: activation name of the MLP.
        loss: ``"batch-all"``, ``"batch-hard"``, ``"semi-hard"`` or ``"contrastive"``.
        margin: loss margin α.
        metric: ``"sqeuclidean"``, ``"euclidean"`` or ``"cosine"``.
        smoothing: μ of the smoothed hinge (None: the hinge).
        normalize: L2-normalise the embeddings (FaceNet's unit sphere).
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        lr: learning rate.
        epochs: passes over the training data.
        p, k: classes per batch and samples per class (P×K batches).
        standardize: scale features to zero mean, unit variance first.
        random_state: seed (int) or None (seed 0).
        n_threads: torch CPU threads during ``fit``/``transform`` (None: torch's setting);
            one thread is fastest for small networks.

    Attributes:
        classes_: the class labels seen in ``fit``.
        n_features_in_: number of features.
        model_: the trained torch network.
        history_: per-epoch training records (loss, triplet-type fractions).

    Example:
        >>> import numpy as np
        >>> X = np.vstack([np.zeros((10, 3)), np.ones((10, 3))]); y = [0] * 10 + [1] * 10
        >>> TripletEmbedder(embedding_dim=2, epochs=2).fit_transform(X, y).shape
        (20, 2)
    """

    def __init__(
        self,
        embedding_dim: int = 16,
        hidden: tuple[int, ...] = (64,),
        activation: str = "relu",
        loss: str = "batch-all",
        margin: float = 0.2,
        metric: str = "sqeuclidean",
        smoothing: float | None = None,
        normalize: bool = True,
        optimizer: str = "adam",
        lr: float = 3e-3,
        epochs: int = 20,
        p: int = 8,
        k: int = 4,
        standardize: bool = True,
        random_state: int | None = None,
        n_threads: int | None = 1,
    ) -> None:
        self.embedding_dim = embedding_dim
        self.hidden = hidden
        self.activation = activation
        self.loss = loss
        self.margin = margin
        self.metric = metric
        self.smoothing = smoothing
        self.normalize = normalize
        self.optimizer = optimizer
        self.lr = lr
        self.epochs = epochs
        self.p = p
        self.k = k
        self.standardize = standardize
        self.random_state = random_state
        self.n_threads = n_threads

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"requires_y": True, "preserves_dtype": [np.float64, np.float32]}

    def _check_params(self) -> None:
        if self.n_threads is not None and not (
            isinstance(self.n_threads, (int, np.integer)) and self.n_threads >= 1
        ):
            raise ValueError(
                f"n_threads must be None or a positive integer; got {self.n_threads!r}"
            )
        for name in ("embedding_dim", "epochs", "p", "k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"lr must be a positive number; got {self.lr!r}")

    def fit(self, X: Any, y: Any) -> TripletEmbedder:
        """Train the embedding on features ``X`` (N, F) with class labels ``y`` (N,)."""
        from tripletlab.train.threads import torch_threads

        self._check_params()
        with torch_threads(self.n_threads):
            return self._fit(X, y)

    def _fit(self, X: Any, y: Any) -> TripletEmbedder:
        from tripletlab.pipeline.factories import build_loss, build_network, build_optimizer
        from tripletlab.train.trainer import Trainer

        X, y = _validate_data(self, X, y, dtype=[np.float64, np.float32], y_numeric=False)
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                f"TripletEmbedder needs samples of at least 2 classes; got 1 class "
                f"({self.classes_[0]!r}): with no negatives there is nothing to learn"
            )
        labels = torch.from_numpy(encoder.transform(y).astype(np.int64))
        self.mean_ = X.mean(axis=0) if self.standardize else np.zeros(X.shape[1])
        scale = X.std(axis=0) if self.standardize else np.ones(X.shape[1])
        self.scale_ = np.where(scale > 0, scale, 1.0)
        seed = 0 if self.random_state is None else int(self.random_state)
        torch.manual_seed(seed)
        self.model_ = build_network(
            "mlp", (X.shape[1],), int(self.embedding_dim), tuple(self.hidden), self.activation
        )
        trainer = Trainer(
            self.model_,
            build_loss(self.loss, self.margin, self.metric, self.smoothing),
            build_optimizer(self.optimizer, self.model_.parameters(), float(self.lr)),
            normalize=self.normalize,
            seed=seed,
            progress=False,
        )
        self.history_ = trainer.fit(
            self._scaled(X),
            labels,
            epochs=int(self.epochs),
            p=min(int(self.p), len(self.classes_)),
            k=int(self.k),
        )
        self.model_.eval()
        return self

    def _scaled(self, X: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(((X - self.mean_) / self.scale_).astype(np.float32))

    def transform(self, X: Any) -> np.ndarray:
        """Embeddings (N, ``embedding_dim``) of ``X``; float32 for float32 input, else float64."""
        from tripletlab.nn.embedding import embed
        from tripletlab.train.threads import torch_threads

        check_is_fitted(self, "model_")
        X = _validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        with torch_threads(self.n_threads):
            embedded = embed(self.model_, self._scaled(X), normalize=self.normalize)
        return embedded.numpy().astype(X.dtype)
