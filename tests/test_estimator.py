"""TripletEmbedder: scikit-learn's estimator checks, and it learns a useful embedding."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from tripletlab import TripletEmbedder

# Few epochs: the checks test the API contract, not the quality of the embedding.
_CHECKED = TripletEmbedder(embedding_dim=3, hidden=(8,), epochs=2, random_state=0)


@parametrize_with_checks([_CHECKED])
def test_sklearn_estimator_checks(estimator, check) -> None:
    check(estimator)


def test_embedding_classifies_digits_by_nearest_neighbour() -> None:
    # On digits raw pixels are already a strong 1-NN baseline (0.983 here); the learned
    # embedding must stay close to it while compressing 64 features to 16.
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, random_state=0, stratify=y
    )
    raw = KNeighborsClassifier(1).fit(X_train, y_train).score(X_test, y_test)
    pipe = make_pipeline(
        TripletEmbedder(epochs=15, standardize=False, random_state=0), KNeighborsClassifier(1)
    ).fit(X_train, y_train)
    assert pipe.score(X_test, y_test) >= 0.97
    assert pipe.score(X_test, y_test) >= raw - 0.01


def test_same_random_state_same_embedding_and_dtype() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5)).astype(np.float32)
    y = np.repeat(["a", "b", "c"], 20)
    first = TripletEmbedder(embedding_dim=4, epochs=3, random_state=7).fit(X, y)
    second = TripletEmbedder(embedding_dim=4, epochs=3, random_state=7).fit(X, y)
    assert np.array_equal(first.transform(X), second.transform(X))
    assert first.transform(X).dtype == np.float32
    assert first.transform(X.astype(np.float64)).dtype == np.float64
    assert list(first.classes_) == ["a", "b", "c"]
    norms = np.linalg.norm(first.transform(X), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5)


def test_bad_input_is_refused() -> None:
    X = np.zeros((10, 2))
    with pytest.raises(ValueError, match="at least 2 classes"):
        TripletEmbedder(epochs=1).fit(X, np.zeros(10))
    with pytest.raises(ValueError, match="epochs"):
        TripletEmbedder(epochs=0).fit(X, np.arange(10) % 2)
    with pytest.raises(ValueError, match="n_threads"):
        TripletEmbedder(n_threads=0).fit(X, np.arange(10) % 2)
    with pytest.raises(ValueError, match="loss"):
        TripletEmbedder(loss="hinge", epochs=1).fit(X, np.arange(10) % 2)
