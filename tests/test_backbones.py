"""Backbones from spec strings: tiny saved transformers models, user factories, built-ins."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from torch import nn

from hf_fixtures import TINY_MEAN, TINY_STD, save_tiny_hf_model
from tripletlab.errors import ConfigError, TripletlabError
from tripletlab.nn.backbones import (
    IMAGENET_MEAN,
    ModelSpec,
    build_backbone,
    parse_model_spec,
)
from tripletlab.nn.heads import Embedder, EmbeddingHead


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("mlp", ModelSpec("mlp", "mlp")),
        ("cnn", ModelSpec("cnn", "cnn")),
        ("hf:facebook/dinov2-small", ModelSpec("hf", "facebook/dinov2-small")),
        ("hf:/models/resnet", ModelSpec("hf", "/models/resnet")),
        ("my_pkg.models:build", ModelSpec("factory", "my_pkg.models:build")),
    ],
)
def test_parse_model_spec(spec, expected):
    assert parse_model_spec(spec) == expected


@pytest.mark.parametrize("spec", ["resnet50", "hf:", "a.b:", ":f", "pkg:fn:x"])
def test_bad_model_spec_is_one_line(spec):
    with pytest.raises(ConfigError, match="model must be") as caught:
        parse_model_spec(spec)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("family", "kind", "has_cls", "shape"),
    [
        ("resnet", "map", False, (3, 40, 56)),
        ("convnext", "map", False, (3, 32, 48)),
        ("vit", "tokens", True, (3, 32, 48)),  # position embeddings interpolated
        ("dinov2", "tokens", True, (3, 24, 40)),
        ("clip", "tokens", True, (3, 32, 32)),
        ("swin", "tokens", False, (3, 32, 48)),
    ],
)
def test_saved_transformers_models_load_as_backbones(tmp_path, family, kind, has_cls, shape):
    folder = save_tiny_hf_model(tmp_path / family, family)
    backbone = build_backbone(f"hf:{folder}", shape)
    assert (backbone.feature_kind, backbone.has_cls) == (kind, has_cls)
    assert list(backbone.mean) == TINY_MEAN and list(backbone.std) == TINY_STD
    pooling = "cls" if has_cls else ("gem" if kind == "map" else "avg")
    head = EmbeddingHead(
        kind, backbone.feature_dim, pooling=pooling, embedding_dim=6, has_cls=has_cls
    )
    out = Embedder(backbone, head)(torch.rand(2, *shape))
    assert out.shape == (2, 6)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


def test_pretrained_weights_are_loaded_and_random_init_differs(tmp_path):
    import transformers

    folder = save_tiny_hf_model(tmp_path / "r", "resnet", processor=False)
    saved = transformers.AutoModel.from_pretrained(folder).state_dict()
    loaded = build_backbone(f"hf:{folder}", (3, 32, 32)).module.state_dict()
    assert all(torch.equal(saved[key], loaded[key]) for key in saved)
    torch.manual_seed(123)
    scratch = build_backbone(f"hf:{folder}", (3, 32, 32), pretrained=False).module.state_dict()
    assert not all(torch.equal(saved[key], scratch[key]) for key in saved)
    assert build_backbone(f"hf:{folder}", (3, 32, 32)).mean == IMAGENET_MEAN  # no processor file


def test_missing_models_name_where_they_looked(tmp_path):
    with pytest.raises(ConfigError, match="model folder not found") as caught:
        build_backbone(f"hf:{tmp_path}/nothing/here", (3, 8, 8))
    assert "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match=r"local Hugging Face cache .*hf download"):
        build_backbone("hf:no-such-org-xyz/no-such-model", (3, 8, 8))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"has no config\.json"):
        build_backbone(f"hf:{tmp_path / 'empty'}", (3, 8, 8))


def test_image_size_the_backbone_cannot_take(tmp_path):
    folder = save_tiny_hf_model(tmp_path / "vit", "vit")
    with pytest.raises(ConfigError, match=r"cannot take images of shape \(3, 4, 4\)") as caught:
        build_backbone(f"hf:{folder}", (3, 4, 4))  # smaller than one 8-pixel patch
    assert "\n" not in str(caught.value)


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    (tmp_path / "user_models.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            def small_net():
                net = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU())
                net.image_mean = (0.5, 0.5, 0.5)
                net.image_std = (0.25, 0.25, 0.25)
                return net

            def not_a_module():
                return "a string"
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "user_models"
    sys.modules.pop("user_models", None)


def test_factory_model(factory_module):
    backbone = build_backbone(f"{factory_module}:small_net", (3, 10, 14))
    assert (backbone.feature_kind, backbone.feature_dim) == ("map", 5)
    assert backbone.mean == (0.5,) * 3 and backbone.std == (0.25,) * 3


@pytest.mark.parametrize(
    ("target", "match"),
    [
        ("user_models:not_a_module", "returned str, not a torch.nn.Module"),
        ("user_models:missing", "has no function 'missing'"),
        ("no_such_package_xyz.models:net", "cannot import 'no_such_package_xyz.models'"),
    ],
)
def test_factory_errors_are_one_line(factory_module, target, match):
    with pytest.raises(TripletlabError, match=match) as caught:
        build_backbone(target, (3, 8, 8))
    assert "\n" not in str(caught.value)


def test_builtin_cnn_takes_non_square_rgb_and_refuses_pretrained():
    backbone = build_backbone("cnn", (3, 48, 64), builtin_dim=16)
    assert backbone.feature_kind == "vector" and backbone.feature_dim == 16
    assert backbone(torch.rand(2, 3, 48, 64)).shape == (2, 16)
    with pytest.raises(ConfigError, match="pretrained applies to hf"):
        build_backbone("cnn", (3, 8, 8), pretrained=True)
    with pytest.raises(ConfigError, match="image_size"):
        build_backbone("cnn", (3, 2, 64))


def test_factory_returning_a_dict_output_is_refused(tmp_path, monkeypatch):
    (tmp_path / "dict_models.py").write_text(
        "from torch import nn\n"
        "class D(nn.Module):\n"
        "    def forward(self, x):\n"
        "        return {'x': x}\n"
        "def make():\n"
        "    return D()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="must return a tensor"):
        build_backbone("dict_models:make", (3, 8, 8))
    sys.modules.pop("dict_models", None)


def test_user_module_is_usable_as_backbone_module():
    assert isinstance(build_backbone("mlp", (3, 4, 4), builtin_dim=3).module, nn.Module)
