"""Clustering quality of an embedding: k-means with one cluster per class, then NMI and AMI.

NMI (normalised mutual information) and AMI (adjusted for chance) compare the k-means
partition with the labels; both are 1 for a perfect match. AMI is 0 in expectation for a
random partition, NMI is not (it grows with the number of clusters). scikit-learn computes
both (Vinh, Epps & Bailey, JMLR 2010), and its k-means is seeded here, so the numbers are
reproducible.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score
from torch import Tensor

from tripletlab.errors import DataError
from tripletlab.validation import check_embeddings, check_labels


def clustering_metrics(
    embeddings: Tensor, labels: Tensor, *, seed: int = 0, n_init: int = 3
) -> dict[str, float]:
    """NMI and AMI between the labels and a k-means partition into as many clusters as classes.

    Args:
        embeddings: (N, D) float embeddings (clustered in euclidean space, in float64).
        labels: (N,) integer labels; at least two classes.
        seed: k-means seed.
        n_init: k-means restarts (the best inertia is kept).

    Returns:
        ``{"nmi": float, "ami": float}``.

    Example:
        >>> x = torch.tensor([[0.0], [0.1], [5.0], [5.1]])
        >>> clustering_metrics(x, torch.tensor([0, 0, 1, 1]))
        {'nmi': 1.0, 'ami': 1.0}
    """
    embeddings = check_embeddings(embeddings, "embeddings")
    labels = check_labels(labels, len(embeddings))
    y = labels.cpu().numpy()
    n_classes = len(np.unique(y))
    if n_classes < 2:
        raise DataError("clustering metrics need at least two classes")
    x = embeddings.detach().cpu().to(torch.float64).numpy()
    clusters = KMeans(n_clusters=n_classes, n_init=n_init, random_state=seed).fit_predict(x)
    return {
        "nmi": float(normalized_mutual_info_score(y, clusters)),
        "ami": float(adjusted_mutual_info_score(y, clusters)),
    }
