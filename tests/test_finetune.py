"""Fine-tuning controls: parameter groups, frozen-backbone epochs, warm-up."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tripletlab.errors import ConfigError
from tripletlab.nn.batch_losses import BatchAllTripletLoss
from tripletlab.nn.heads import Embedder, EmbeddingHead
from tripletlab.pipeline.factories import build_warmup_scheduler
from tripletlab.train.finetune import FreezeBackbone, parameter_groups
from tripletlab.train.trainer import Trainer


def _embedder():
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
    return Embedder(backbone, EmbeddingHead("map", 8, pooling="gem", embedding_dim=4))


def test_groups_split_backbone_and_decay():
    net = _embedder()
    groups = {
        g["name"]: g
        for g in parameter_groups(
            net, lr=1e-3, weight_decay=0.05, backbone=net.backbone, backbone_lr_multiplier=0.1
        )
    }
    assert [p.shape for p in groups["backbone"]["params"]] == [torch.Size([8, 3, 3, 3])]
    assert len(groups["backbone_no_decay"]["params"]) == 3  # conv bias, BN weight and bias
    assert groups["backbone"]["lr"] == pytest.approx(1e-4) and groups["head"]["lr"] == 1e-3
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0
    head_no_decay = {p.shape for p in groups["head_no_decay"]["params"]}
    assert torch.Size([]) in head_no_decay  # GeM's p is not decayed
    total = sum(len(g["params"]) for g in groups.values())
    assert total == len(list(net.parameters()))
    torch.optim.AdamW(list(groups.values()))  # a valid optimiser definition


def test_bad_group_settings():
    with pytest.raises(ConfigError, match="backbone_lr_multiplier"):
        parameter_groups(nn.Linear(2, 2), lr=0.1, weight_decay=0, backbone_lr_multiplier=0)
    with pytest.raises(ConfigError, match="weight_decay"):
        parameter_groups(nn.Linear(2, 2), lr=0.1, weight_decay=-1)


def test_frozen_backbone_keeps_weights_and_batchnorm_statistics_then_trains():
    net = _embedder()
    x = torch.rand(24, 3, 6, 6) + (torch.arange(24) % 3)[:, None, None, None]
    y = torch.arange(24) % 3
    start = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    snapshots = []

    def snapshot(trainer):
        snapshots.append({k: v.clone() for k, v in net.backbone.state_dict().items()})

    optimizer = torch.optim.AdamW(parameter_groups(net, lr=0.01, weight_decay=0.1))
    trainer = Trainer(
        net,
        BatchAllTripletLoss(margin=0.5),
        optimizer,
        epoch_start_hooks=[FreezeBackbone(net.backbone, epochs=1), snapshot],
        progress=False,
    )
    head_before = net.head.projection.weight.clone()
    trainer.fit(x, y, epochs=2, p=3, k=4)
    after_epoch_1 = snapshots[1]
    assert all(torch.equal(start[k], after_epoch_1[k]) for k in start)  # weights and BN stats
    assert not torch.equal(head_before, net.head.projection.weight)
    end = net.backbone.state_dict()
    assert not torch.equal(start["0.weight"], end["0.weight"])


def test_warmup_then_step_and_errors():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_warmup_scheduler("step", opt, 6, warmup_epochs=1, step_size=2, gamma=0.5)
    lrs = []
    for _ in range(6):
        lrs.append(round(opt.param_groups[0]["lr"], 4))
        opt.step()
        sched.step()
    assert lrs == [0.1, 1.0, 1.0, 0.5, 0.5, 0.25]
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    assert build_warmup_scheduler("none", opt, 3, warmup_epochs=0) is None
    with pytest.raises(ConfigError, match="warmup_epochs"):
        build_warmup_scheduler("cosine", opt, 3, warmup_epochs=3)
    with pytest.raises(ConfigError, match="freeze_epochs"):
        FreezeBackbone(nn.Linear(1, 1), epochs=-1)
