"""Tiny random-weight transformers vision models saved with ``save_pretrained`` into a folder,
so tests load them through exactly the path a user takes with a real checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

#: Custom statistics, so a test can tell that they were read from the folder.
TINY_MEAN = [0.25, 0.5, 0.75]
TINY_STD = [0.5, 0.25, 0.125]


def _config(family: str):
    import transformers as t

    if family == "resnet":
        return t.ResNetConfig(
            embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"
        )
    if family == "convnext":
        return t.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)
    tiny_vit = {
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "image_size": 32,
        "patch_size": 8,
    }
    if family == "vit":
        return t.ViTConfig(**tiny_vit)
    if family == "dinov2":
        return t.Dinov2Config(**tiny_vit)
    if family == "clip":
        text = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}
        text["intermediate_size"] = 32
        return t.CLIPConfig(text_config=text, vision_config=tiny_vit, projection_dim=8)
    if family == "swin":
        return t.SwinConfig(
            image_size=32, patch_size=4, embed_dim=8, depths=[1, 1], num_heads=[1, 2], window_size=4
        )
    raise ValueError(family)


def save_tiny_hf_model(folder: Path, family: str = "resnet", processor: bool = True) -> Path:
    """Save a tiny random ``family`` model (and a preprocessor_config.json) into ``folder``."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = _config(family)
    model = (
        transformers.CLIPModel(config)
        if family == "clip"
        else transformers.AutoModel.from_config(config)
    )
    model.save_pretrained(folder)
    if processor:
        settings = {"image_mean": TINY_MEAN, "image_std": TINY_STD, "do_normalize": True}
        (Path(folder) / "preprocessor_config.json").write_text(json.dumps(settings))
    return Path(folder)
