"""Inputs that stream from disk: LazyInputs, the chunked embedding pass, offline mining
and offline-mining training over a dataset read by index — equal to the in-memory path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from tripletlab.errors import DataError
from tripletlab.functional import batch_hard_triplet_loss
from tripletlab.train.offline_mining import OfflineMiner, OfflineMiningTrainer
from tripletlab.train.streaming import LazyInputs, dataset_labels, embed_dataset, mine_dataset


class NpyFolder(Dataset):
    """One .npy file per sample, read on each access; counts the reads."""

    def __init__(self, folder: Path, x: torch.Tensor, y: torch.Tensor, with_labels: bool = True):
        folder.mkdir(parents=True, exist_ok=True)
        self.paths = []
        for i, row in enumerate(x):
            path = folder / f"{i:04d}.npy"
            np.save(path, row.numpy())
            self.paths.append(path)
        self._labels = y.clone()
        if with_labels:
            self.labels = self._labels
        self.reads = 0

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        self.reads += 1
        return torch.from_numpy(np.load(self.paths[i])), self._labels[i]


def _blobs(n: int = 120) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 6
    x = torch.randn(n, 6, generator=gen) + torch.nn.functional.one_hot(y, 6) * 2
    return x, y


def test_lazy_inputs_index_like_a_tensor(tmp_path: Path) -> None:
    x, y = _blobs(20)
    data = NpyFolder(tmp_path, x, y)
    lazy = LazyInputs(data)
    assert len(lazy) == 20
    torch.testing.assert_close(lazy[torch.tensor([3, 0, 3])], x[[3, 0, 3]])
    torch.testing.assert_close(lazy[5:9], x[5:9])
    torch.testing.assert_close(lazy[[1, 2]], x[[1, 2]])
    torch.testing.assert_close(lazy[7], x[7])
    assert lazy[torch.tensor([], dtype=torch.long)].shape == (0, 6)
    assert data.reads == 3 + 4 + 2 + 1 + 1  # only what was indexed (+1: the empty shape)
    assert lazy.to("cpu").device == torch.device("cpu")


def test_dataset_labels_from_attribute_or_items(tmp_path: Path) -> None:
    x, y = _blobs(12)
    assert torch.equal(dataset_labels(NpyFolder(tmp_path / "a", x, y)), y)
    without = NpyFolder(tmp_path / "b", x, y, with_labels=False)
    assert torch.equal(dataset_labels(without), y)
    assert without.reads == 12

    class FloatLabels(torch.utils.data.TensorDataset):
        labels = torch.zeros(3)

    with pytest.raises(DataError, match="integers"):
        dataset_labels(FloatLabels(torch.zeros(3, 2)))


def test_mixed_shapes_are_a_data_error() -> None:
    class Ragged(Dataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int):
            return torch.zeros(2 + i), 0

    with pytest.raises(DataError, match="differ in shape"):
        LazyInputs(Ragged())[torch.tensor([0, 1])]


@pytest.mark.parametrize("workers", [0, 2])
def test_embedding_pass_reads_chunk_by_chunk_in_order(tmp_path: Path, workers: int) -> None:
    x, y = _blobs(50)
    data = NpyFolder(tmp_path, x, y)
    model = torch.nn.Linear(6, 3)
    emb, labels = embed_dataset(model, data, batch_size=16, num_workers=workers)
    torch.testing.assert_close(emb, model(x).detach())
    assert torch.equal(labels, y)
    # an iterable of batches (a DataLoader the user built) works the same
    loader = DataLoader(data, batch_size=7)
    emb2, labels2 = embed_dataset(model, loader)
    torch.testing.assert_close(emb2, emb)
    assert torch.equal(labels2, y)
    empty = embed_dataset(model, [])
    assert empty[0].shape == (0, 0) and empty[1].shape == (0,)


def test_mining_a_streamed_dataset_equals_mining_tensors(tmp_path: Path) -> None:
    x, y = _blobs()
    miner = OfflineMiner("semi_hard", margin=0.5, triplets_per_anchor=2, candidates=8)
    model = torch.nn.Linear(6, 3)
    (a, p, n), labels = mine_dataset(model, NpyFolder(tmp_path, x, y), miner, seed=4)
    want = miner.mine(model(x).detach(), y, seed=4)
    assert len(a) > 0 and torch.equal(labels, y)
    assert all(torch.equal(u, v) for u, v in zip((a, p, n), want, strict=True))


def _trainer(tmp_path: Path, workers: int = 0) -> OfflineMiningTrainer:
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3)
    return OfflineMiningTrainer(
        model,
        batch_hard_triplet_loss,
        torch.optim.SGD(model.parameters(), lr=0.05),
        miner=OfflineMiner("semi_hard", margin=0.5, triplets_per_anchor=2, candidates=8),
        schedule="alternate",
        batch_triplets=32,
        embed_batch_size=50,
        embed_workers=workers,
        checkpoint_dir=tmp_path,
        progress=False,
        seed=3,
    )


def test_offline_mining_training_from_a_streamed_dataset_equals_tensors(tmp_path: Path) -> None:
    x, y = _blobs(72)
    in_memory = _trainer(tmp_path / "mem")
    in_memory.fit(x, y, epochs=2, p=3, k=4)  # one offline epoch, one online
    data = NpyFolder(tmp_path / "files", x, y)
    streamed = _trainer(tmp_path / "stream", workers=1)
    history = streamed.fit(LazyInputs(data), dataset_labels(data), epochs=2, p=3, k=4)
    assert history[0]["offline_triplets"] > 0
    assert streamed.global_step == in_memory.global_step
    for name, value in in_memory.model.state_dict().items():
        torch.testing.assert_close(streamed.model.state_dict()[name], value, rtol=0, atol=0)


def test_negative_embed_workers_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="embed_workers"):
        _trainer(tmp_path, workers=-1)
