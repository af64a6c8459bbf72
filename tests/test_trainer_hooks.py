"""Trainer options for fine-tuning: Datasets via DataLoader, precision, accumulation, hooks."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from tripletlab.data.sampler import PKSampler
from tripletlab.errors import DataError
from tripletlab.nn.batch_losses import BatchAllTripletLoss
from tripletlab.train.trainer import Trainer


def _data(n=48, d=6, classes=4):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=generator)
    y = torch.arange(n) % classes
    return x + y[:, None].float(), y


def _trainer(model, **options):
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    return Trainer(model, BatchAllTripletLoss(margin=0.5), optimizer, progress=False, **options)


def test_a_dataset_trains_exactly_like_the_same_tensors():
    x, y = _data()
    torch.manual_seed(1)
    a = torch.nn.Linear(6, 3)
    b = torch.nn.Linear(6, 3)
    b.load_state_dict(a.state_dict())
    _trainer(a).fit(x, y, epochs=2, p=2, k=4)
    _trainer(b).fit(TensorDataset(x, y), y, epochs=2, p=2, k=4)
    assert all(torch.equal(pa, pb) for pa, pb in zip(a.parameters(), b.parameters(), strict=True))
    trainer = _trainer(b)
    torch.testing.assert_close(trainer.embed(TensorDataset(x, y), batch_size=7), trainer.embed(x))


def test_accumulating_two_batches_is_one_step_on_their_mean_gradient():
    x, y = _data()
    torch.manual_seed(1)
    model = torch.nn.Linear(6, 3)
    manual = torch.nn.Linear(6, 3)
    manual.load_state_dict(model.state_dict())
    trainer = _trainer(model, accumulate_batches=2, normalize=False)
    trainer.fit(x, y, epochs=1, p=2, k=4, steps_per_epoch=2)
    sampler = PKSampler(y, p=2, k=4, seed=0)
    sampler.set_epoch(1)
    loss = BatchAllTripletLoss(margin=0.5)
    optimizer = torch.optim.SGD(manual.parameters(), lr=0.05)
    for batch in list(sampler)[:2]:
        (loss(manual(x[batch]), y[batch]) / 2).backward()
    optimizer.step()
    for pa, pb in zip(model.parameters(), manual.parameters(), strict=True):
        torch.testing.assert_close(pa, pb)


@pytest.mark.parametrize("precision", ["bf16", "16-mixed"])
def test_reduced_precision_trains_on_cpu_and_checkpoints_the_scaler(tmp_path, precision):
    x, y = _data()
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    trainer = _trainer(model, precision=precision, checkpoint_dir=tmp_path)
    history = trainer.fit(x, y, epochs=2, p=2, k=4)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in history)
    assert trainer.embed(x).dtype == torch.float32
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ("scaler" in state) == (precision == "16-mixed")


def test_epoch_start_hooks_see_the_new_epoch_in_train_mode():
    x, y = _data()
    seen = []
    model = torch.nn.Linear(6, 3)
    hook = lambda trainer: seen.append((trainer.epoch, trainer.model.training))  # noqa: E731
    _trainer(model, epoch_start_hooks=[hook]).fit(x, y, epochs=3, p=2, k=4)
    assert seen == [(1, True), (2, True), (3, True)]


class _Broken(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, index):
        raise DataError(f"cannot decode img_{index}.jpg (on_unreadable='error')")


def test_a_data_error_in_a_worker_comes_back_as_one_line():
    trainer = _trainer(torch.nn.Linear(6, 3), workers=1)
    with pytest.raises(DataError) as caught:
        trainer.fit(_Broken(), torch.arange(8) % 2, epochs=1, p=2, k=2)
    assert str(caught.value).startswith("cannot decode img_") and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"accumulate_batches": 0}, "accumulate_batches"),
        ({"workers": -1}, "workers"),
        ({"precision": "8"}, "precision must be one of"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        _trainer(torch.nn.Linear(2, 2), **options)
