"""Real images end to end with the library API: a tiny photo folder on disk, streamed and
augmented, a tiny saved transformers ResNet (or a module:factory model) fine-tuned for 2
epochs with the Trainer, resumed from a checkpoint, and evaluated."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from hf_fixtures import save_tiny_hf_model
from image_fixtures import make_image_folder
from tripletlab.data.augment import ImagePreprocess, augment_preset
from tripletlab.data.image_stream import stream_image_folder
from tripletlab.evaluate.retrieval import retrieval_metrics
from tripletlab.nn.backbones import build_backbone
from tripletlab.nn.batch_losses import BatchHardTripletLoss
from tripletlab.nn.heads import Embedder, EmbeddingHead
from tripletlab.pipeline.factories import build_warmup_scheduler
from tripletlab.train.finetune import FreezeBackbone, parameter_groups
from tripletlab.train.trainer import Trainer

LOAD_SIZE, IMAGE_SIZE = (36, 44), (32, 40)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = make_image_folder(tmp_path_factory.mktemp("photos"), n_classes=4, per_class=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the corrupt file is reported; tested elsewhere
        return stream_image_folder(root, image_size=LOAD_SIZE)


@pytest.fixture(scope="module")
def resnet_dir(tmp_path_factory):
    return save_tiny_hf_model(tmp_path_factory.mktemp("models") / "tiny-resnet", "resnet")


def _trainer(spec, checkpoint_dir, *, workers=0, precision="32", pretrained=None, **options):
    torch.manual_seed(0)
    backbone = build_backbone(spec, (3, *IMAGE_SIZE), pretrained=pretrained)
    preprocess = ImagePreprocess(IMAGE_SIZE, backbone.mean, backbone.std, augment_preset("strong"))
    pooling = "gem" if backbone.feature_kind == "map" else "avg"
    head = EmbeddingHead(
        backbone.feature_kind, backbone.feature_dim, pooling=pooling, embedding_dim=8, bnneck=True
    )
    model = Embedder(backbone, head, preprocess)
    groups = parameter_groups(
        model, lr=3e-3, weight_decay=1e-4, backbone=backbone, backbone_lr_multiplier=0.1
    )
    optimizer = torch.optim.AdamW(groups)
    return Trainer(
        model,
        BatchHardTripletLoss(margin=0.2),
        optimizer,
        scheduler=build_warmup_scheduler("cosine", optimizer, 3, warmup_epochs=1),
        epoch_start_hooks=[FreezeBackbone(backbone, epochs=1)],
        accumulate_batches=2,
        precision=precision,
        workers=workers,
        checkpoint_dir=checkpoint_dir,
        progress=False,
        **options,
    )


def test_tiny_resnet_trains_on_streamed_photos_and_evaluates(photos, resnet_dir, tmp_path):
    trainer = _trainer(f"hf:{resnet_dir}", tmp_path, workers=1, precision="bf16")
    history = trainer.fit(photos, photos.labels, epochs=2, p=2, k=3)
    assert [r["epoch"] for r in history] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in history)
    embeddings = trainer.embed(photos, batch_size=10)
    assert embeddings.shape == (len(photos), 8) and torch.isfinite(embeddings).all()
    metrics = retrieval_metrics(embeddings, photos.labels)
    assert 0.0 <= metrics["precision_at_1"] <= 1.0 and metrics["n_queries"] == len(photos)
    assert (tmp_path / "final.pt").is_file()


def test_resume_from_a_checkpoint_equals_the_uninterrupted_run(photos, resnet_dir, tmp_path):
    spec = f"hf:{resnet_dir}"
    whole = _trainer(spec, tmp_path / "whole")
    whole.fit(photos, photos.labels, epochs=2, p=2, k=3)
    _trainer(spec, tmp_path / "cut").fit(photos, photos.labels, epochs=1, p=2, k=3)
    resumed = _trainer(spec, tmp_path / "cut")
    resumed.fit(photos, photos.labels, epochs=2, p=2, k=3, resume_from=tmp_path / "cut" / "last.pt")
    for (name, a), (_, b) in zip(
        whole.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert [r["loss"] for r in whole.history] == [r["loss"] for r in resumed.history]


def test_a_module_factory_model_trains_the_same_way(photos, tmp_path, monkeypatch):
    (tmp_path / "my_vision_models.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def tiny_cnn():
                return nn.Sequential(
                    nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                    nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                )
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        trainer = _trainer("my_vision_models:tiny_cnn", tmp_path / "run")
        history = trainer.fit(photos, photos.labels, epochs=2, p=2, k=3)
    finally:
        sys.modules.pop("my_vision_models", None)
    assert len(history) == 2
    metrics = retrieval_metrics(trainer.embed(photos), photos.labels)
    assert 0.0 <= metrics["map_at_r"] <= 1.0


@pytest.mark.slow
def test_a_real_kill_mid_epoch_then_resume_equals_the_uninterrupted_run(
    photos, resnet_dir, tmp_path
):
    """SIGKILL in the middle of epoch 2 (a fresh process, 2 DataLoader workers), resume here."""
    spec = f"hf:{resnet_dir}"
    script = tmp_path / "killed.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import warnings, torch
            from test_image_training import _trainer, LOAD_SIZE
            from tripletlab.data.image_stream import stream_image_folder
            warnings.simplefilter("ignore")
            photos = stream_image_folder({str(photos.root)!r}, image_size=LOAD_SIZE)
            trainer = _trainer({spec!r}, {str(tmp_path / "cut")!r}, workers=2, kill_after_steps=6)
            trainer.fit(photos, photos.labels, epochs=2, p=2, k=3)
            """
        )
    )
    tests_dir = str(Path(__file__).parent)
    env = {"PYTHONPATH": tests_dir + ":" + ":".join(sys.path)}
    killed = subprocess.run([sys.executable, str(script)], env=env, timeout=600, check=False)
    assert killed.returncode == -signal.SIGKILL
    whole = _trainer(spec, tmp_path / "whole", workers=2)
    whole.fit(photos, photos.labels, epochs=2, p=2, k=3)
    resumed = _trainer(spec, tmp_path / "cut", workers=2)
    resumed.fit(photos, photos.labels, epochs=2, p=2, k=3, resume_from=tmp_path / "cut" / "last.pt")
    for (name, a), (_, b) in zip(
        whole.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
