"""``digits``: scikit-learn's bundled 8×8 handwritten digits, the default dataset.

1,797 grey images of the digits 0–9 (about 180 per class) from the UCI "Optical
Recognition of Handwritten Digits" set, shipped inside scikit-learn — nothing is downloaded.
Pixel values 0…16 are scaled to [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch

from tripletlab.data.embedding_dataset import EmbeddingDataset

DIGITS_SOURCE = "scikit-learn load_digits (bundled, 8×8, scaled to [0, 1])"


def load_digits_dataset(flatten: bool = False) -> EmbeddingDataset:
    """The digits as (1797, 1, 8, 8) images, or (1797, 64) vectors with ``flatten=True``.

    Example:
        >>> ds = load_digits_dataset(flatten=True)
        >>> tuple(ds.features.shape), float(ds.features.max()), ds.class_names[:3]
        ((1797, 64), 1.0, ['0', '1', '2'])
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0
    features = torch.from_numpy(images.reshape(len(images), -1) if flatten else images[:, None])
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    return EmbeddingDataset(features, labels, [str(c) for c in range(10)], "digits", DIGITS_SOURCE)
