"""tripletlab's retrieval metrics agree with pytorch-metric-learning's AccuracyCalculator.

Marked ``bench``: needs the ``bench`` extra (pytorch-metric-learning, faiss-cpu). Same
float32 embeddings on both sides; PML ranks with faiss ``IndexFlatL2`` (or its own
``CustomKNN`` for cosine), tripletlab with the exact chunked TorchKNN.
"""

from __future__ import annotations

import pytest
import torch

from tripletlab.evaluate import clustering_metrics, retrieval_metrics

pytestmark = pytest.mark.bench

PML_NAMES = {
    "precision_at_1": "precision_at_1",
    "r_precision": "r_precision",
    "map_at_r": "mean_average_precision_at_r",
}


def _embeddings(n: int, classes: int, d: int, spread: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    centres = torch.randn(classes, d, generator=g)
    return centres[labels] + spread * torch.randn(n, d, generator=g), labels


def _calculator(**kwargs):
    accuracy = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")
    pytest.importorskip("faiss")
    return accuracy.AccuracyCalculator(
        include=tuple(PML_NAMES.values()), device=torch.device("cpu"), **kwargs
    )


@pytest.mark.parametrize(
    ("n", "classes", "spread", "seed"), [(600, 5, 0.6, 0), (2000, 20, 1.0, 1), (3000, 10, 0.4, 2)]
)
@pytest.mark.parametrize("k", [None, "max_bin_count"])
def test_leave_one_out_agrees_to_1e6(n, classes, spread, seed, k):
    x, y = _embeddings(n, classes, 32, spread, seed)
    theirs = _calculator(k=k).get_accuracy(x, y)
    ours = retrieval_metrics(x, y)
    for name, pml_name in PML_NAMES.items():
        assert abs(ours[name] - theirs[pml_name]) <= 1e-6, name


def test_separate_reference_set_agrees_to_1e6():
    x, y = _embeddings(2500, 8, 32, 0.8, seed=3)
    queries, q_labels, refs, r_labels = x[:500], y[:500], x[500:], y[500:]
    theirs = _calculator(k="max_bin_count").get_accuracy(queries, q_labels, refs, r_labels, False)
    ours = retrieval_metrics(queries, q_labels, references=refs, reference_labels=r_labels)
    for name, pml_name in PML_NAMES.items():
        assert abs(ours[name] - theirs[pml_name]) <= 1e-6, name


def test_cosine_agrees_with_pml_cosine_similarity_knn():
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning.distances import CosineSimilarity
    from pytorch_metric_learning.utils.inference import CustomKNN

    x, y = _embeddings(1500, 6, 16, 0.9, seed=4)
    theirs = _calculator(k="max_bin_count", knn_func=CustomKNN(CosineSimilarity())).get_accuracy(
        x, y
    )
    ours = retrieval_metrics(x, y, metric="cosine")
    for name, pml_name in PML_NAMES.items():
        assert abs(ours[name] - theirs[pml_name]) <= 1e-6, name


def test_nmi_ami_agree_given_the_same_kmeans():
    # PML clusters with faiss k-means by default, which finds different clusters than
    # scikit-learn's; with the same clustering procedure the scores agree.
    from sklearn.cluster import KMeans

    accuracy = pytest.importorskip("pytorch_metric_learning.utils.accuracy_calculator")

    def sklearn_kmeans(query, n_clusters):
        x = query.double().numpy()
        fitted = KMeans(n_clusters=n_clusters, n_init=3, random_state=0).fit_predict(x)
        return torch.from_numpy(fitted)

    x, y = _embeddings(800, 6, 8, 1.0, seed=5)
    theirs = accuracy.AccuracyCalculator(
        include=("NMI", "AMI"), kmeans_func=sklearn_kmeans, device=torch.device("cpu")
    ).get_accuracy(x, y)
    ours = clustering_metrics(x, y, seed=0)
    assert abs(ours["nmi"] - theirs["NMI"]) <= 1e-6
    assert abs(ours["ami"] - theirs["AMI"]) <= 1e-6
