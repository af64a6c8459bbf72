"""Gallery index: identity search against brute force, safe versioned files, verification."""

from __future__ import annotations

import pickle

import pytest
import torch

from tripletlab.errors import DataError
from tripletlab.evaluate.gallery import GALLERY_VERSION, GalleryIndex, verify_pairs


def _brute_force_identities(queries, gallery, labels, top_k, metric="sqeuclidean"):
    """Per query: every identity's nearest sample, sorted by (distance, gallery row)."""
    from tripletlab.functional.distances import pairwise_distances

    d = pairwise_distances(queries, gallery, metric=metric)
    out = []
    for row in d:
        best = {}
        for j in range(len(gallery)):  # ascending j: the first minimum wins ties
            lab = int(labels[j])
            if lab not in best or row[j] < best[lab][0]:
                best[lab] = (float(row[j]), j)
        ranked = sorted(best.items(), key=lambda item: (item[1][0], item[1][1]))[:top_k]
        out.append([(lab, j) for lab, (_, j) in ranked])
    return out


@pytest.mark.parametrize("metric", ["sqeuclidean", "cosine"])
def test_search_returns_the_nearest_identities_as_brute_force(metric: str) -> None:
    gen = torch.Generator().manual_seed(0)
    gallery = torch.randn(120, 6, generator=gen)
    labels = torch.randint(0, 15, (120,), generator=gen) * 3 - 7  # negative labels too
    queries = torch.randn(25, 6, generator=gen)
    index = GalleryIndex(gallery, labels, metric=metric)
    # top_k=5 needs a window of 20 neighbours: the window has to grow for some queries
    found = index.search(queries, top_k=5)
    want = _brute_force_identities(queries, gallery, labels, 5, metric)
    for q in range(len(queries)):
        got = list(zip(found.labels[q].tolist(), found.indices[q].tolist(), strict=True))
        assert got == want[q]
        assert len(set(found.labels[q].tolist())) == 5
    assert (found.distances[:, 1:] >= found.distances[:, :-1]).all()


def test_top_k_beyond_the_number_of_identities_is_padded() -> None:
    index = GalleryIndex(torch.tensor([[0.0], [1.0], [2.0]]), torch.tensor([4, 4, 9]))
    found = index.search(torch.tensor([[1.9]]), top_k=4)
    assert found.labels.tolist() == [[9, 4, -1, -1]]
    assert found.indices.tolist() == [[2, 1, -1, -1]]
    assert torch.isinf(found.distances[0, 2:]).all()


def test_save_and_load_round_trip(tmp_path) -> None:
    index = GalleryIndex(
        torch.randn(5, 3, dtype=torch.float64),
        torch.tensor([0, 1, 1, 2, 0]),
        ids=["a.png", "b.png", "c.png", "d.png", "e.png"],
        metric="euclidean",
        threshold=0.75,
        class_names=["ann", "bob", "cy"],
        info={"run_dir": "/runs/x", "checkpoint_sha256": "abc"},
    )
    path = index.save(tmp_path / "sub" / "gallery.idx")
    loaded = GalleryIndex.load(path)
    assert torch.equal(loaded.embeddings, index.embeddings)
    assert loaded.embeddings.dtype == torch.float32
    assert torch.equal(loaded.labels, index.labels)
    assert loaded.ids == index.ids and loaded.metric == "euclidean"
    assert loaded.threshold == 0.75 and loaded.class_names == ["ann", "bob", "cy"]
    assert loaded.info == {"run_dir": "/runs/x", "checkpoint_sha256": "abc"}
    assert loaded.name_of(1) == "bob"
    assert not list(tmp_path.joinpath("sub").glob(".gallery.idx.*"))  # no temp file left


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_loading_refuses_foreign_newer_and_unsafe_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        GalleryIndex.load(tmp_path / "missing.idx")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.ones(2)}, foreign)
    with pytest.raises(DataError, match="not a tripletlab gallery"):
        GalleryIndex.load(foreign)
    newer = tmp_path / "newer.idx"
    index = GalleryIndex(torch.ones(2, 2), torch.tensor([0, 1]))
    index.save(newer)
    payload = torch.load(newer, weights_only=True)
    payload["version"] = GALLERY_VERSION + 1
    torch.save(payload, newer)
    with pytest.raises(DataError, match="version"):
        GalleryIndex.load(newer)
    evil = tmp_path / "evil.idx"
    evil.write_bytes(pickle.dumps({"format": "tripletlab-gallery", "x": _Evil()}))
    with pytest.raises(DataError, match="not a readable"):
        GalleryIndex.load(evil)
    garbage = tmp_path / "garbage.idx"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(DataError):
        GalleryIndex.load(garbage)


def test_gallery_validates_its_inputs() -> None:
    with pytest.raises(ValueError, match="unique"):
        GalleryIndex(torch.ones(2, 2), torch.tensor([0, 1]), ids=["x", "x"])
    with pytest.raises(ValueError, match="ids"):
        GalleryIndex(torch.ones(2, 2), torch.tensor([0, 1]), ids=["x"])
    with pytest.raises(ValueError, match="metric"):
        GalleryIndex(torch.ones(2, 2), torch.tensor([0, 1]), metric="manhattan")
    with pytest.raises(ValueError, match="threshold"):
        GalleryIndex(torch.ones(2, 2), torch.tensor([0, 1]), threshold=-1.0)
    with pytest.raises(DataError, match="at least one"):
        GalleryIndex(torch.ones(0, 2), torch.zeros(0, dtype=torch.long))
    index = GalleryIndex(torch.ones(2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="same model"):
        index.search(torch.ones(1, 3))
    with pytest.raises(ValueError, match="top_k"):
        index.search(torch.ones(1, 2), top_k=0)


def test_verify_pairs_at_the_threshold() -> None:
    a = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [1.0, 1.0], [2.0, 0.0]])
    dist, same = verify_pairs(a, b, threshold=1.0)
    assert dist.tolist() == [1.0, 0.0, 4.0]
    assert same.tolist() == [True, True, False]  # d ≤ τ is "same", at τ included
    dist, same = verify_pairs(a[:1], b, threshold=1.0, metric="euclidean")
    assert dist.tolist() == [1.0, pytest.approx(2**0.5), 2.0]
    with pytest.raises(ValueError, match="threshold"):
        verify_pairs(a, b, threshold=-0.5)
    with pytest.raises(ValueError, match="rows"):
        verify_pairs(a[:2], b, threshold=1.0)


@pytest.mark.bench
def test_search_with_the_faiss_backend_equals_the_torch_backend() -> None:
    pytest.importorskip("faiss")
    from tripletlab.evaluate.knn_faiss import FaissKNN

    gen = torch.Generator().manual_seed(1)
    index = GalleryIndex(torch.randn(300, 8, generator=gen), torch.arange(300) % 40)
    queries = torch.randn(30, 8, generator=gen)
    want = index.search(queries, top_k=6)
    got = index.search(queries, top_k=6, backend=FaissKNN("flat"))
    assert torch.equal(got.labels, want.labels) and torch.equal(got.indices, want.indices)
    torch.testing.assert_close(got.distances, want.distances, rtol=1e-5, atol=1e-5)
