"""The streaming image dataset: lazy decoding, modes, sizes, unreadable files, DataLoader."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from image_fixtures import class_colour, make_image_folder, truncate, write_image
from tripletlab.data.image_stream import (
    ImageFileDataset,
    decode_image,
    image_size_pair,
    scan_image_folder,
    stream_image_folder,
)
from tripletlab.data.sampler import PKSampler
from tripletlab.errors import DataError


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("photos"))


def test_scan_keeps_names_and_labels_and_names_the_corrupt_file(folder):
    with pytest.warns(UserWarning, match=r"broken\.jpg"):
        ds = stream_image_folder(folder, image_size=(24, 32))
    assert len(ds) == 24 and ds.class_names == [f"class_{c}" for c in range(4)]
    assert ds.labels.tolist() == sorted(ds.labels.tolist())
    assert ds.files.dtype.kind == "S"  # one numpy array, not a list of Python objects
    assert any("broken.jpg" in note for note in ds.warnings)
    assert ds.feature_shape == (3, 24, 32)


def test_every_mode_and_format_decodes_to_rgb_of_the_requested_size(folder):
    with pytest.warns(UserWarning):
        ds = stream_image_folder(folder, image_size=(24, 32))
    for i in range(len(ds)):
        image, label = ds[i]
        assert image.shape == (3, 24, 32) and image.dtype == torch.uint8
        colour = torch.from_numpy(class_colour(int(label))).float()
        mean = image.float().mean(dim=(1, 2))
        grey = bool((image[0] == image[1]).all() and (image[1] == image[2]).all())
        # grey files (L, I;16) keep the luminance only; colour files keep the class colour
        assert grey or (mean - colour).abs().max() < 12, (ds.path(i), mean, colour)


def test_alpha_is_composited_over_white_and_16_bit_is_rescaled(tmp_path):
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    assert decode_image(tmp_path / "clear.png", (4, 4)).tolist() == [[[255] * 3] * 4] * 4
    Image.fromarray(np.full((3, 5), 1000, np.uint16)).save(tmp_path / "deep.png")
    assert decode_image(tmp_path / "deep.png", (3, 5))[..., 0].min() == 255
    palette = Image.new("P", (6, 2))
    palette.putpalette([0, 0, 255] * 256)
    palette.save(tmp_path / "pal.png")
    assert decode_image(tmp_path / "pal.png", (2, 6))[0, 0].tolist() == [0, 0, 255]


def test_on_unreadable_error_refuses_the_folder_naming_the_file(folder):
    with pytest.raises(DataError, match=r"1 unreadable file\(s\).*broken\.jpg") as caught:
        stream_image_folder(folder, image_size=8, on_unreadable="error")
    assert "\n" not in str(caught.value)


def test_truncated_file_is_substituted_by_its_class_or_refused(tmp_path):
    root = make_image_folder(tmp_path / "imgs", n_classes=2, per_class=3, corrupt=False)
    victim = root / "class_1" / "002.png"
    truncate(victim)
    ds = stream_image_folder(root, image_size=16)  # the header still reads
    index = [str(ds.path(i)) for i in range(len(ds))].index(str(victim))
    with pytest.warns(UserWarning, match=r"cannot decode .*002\.png"):
        image, label = ds[index]
    assert int(label) == 1 and torch.equal(image, ds[index + 1 - 3][0])  # 000.png of class 1
    strict = ImageFileDataset(root, ds.files, ds.labels, ds.class_names, 16, on_unreadable="error")
    with pytest.raises(DataError, match=r"cannot decode .*002\.png"):
        strict[index]


def test_bad_arguments_give_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="image folder not found"):
        stream_image_folder(tmp_path / "missing", image_size=8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        stream_image_folder(tmp_path / "empty", image_size=8)
    with pytest.raises(DataError, match="image_size"):
        image_size_pair((8, 0))
    with pytest.raises(DataError, match="image_size"):
        image_size_pair((1, 2, 3))
    with pytest.raises(DataError, match="on_unreadable"):
        scan_image_folder(tmp_path, on_unreadable="ignore")


@pytest.mark.filterwarnings("ignore:'pin_memory'")
def test_pk_sampler_and_dataloader_with_workers_and_pinned_memory(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = stream_image_folder(folder, image_size=(20, 12))
    sampler = PKSampler(ds.labels, p=2, k=3, seed=0)
    loader = DataLoader(ds, batch_sampler=sampler, num_workers=2, pin_memory=True)
    seen = []
    for images, labels in loader:
        assert images.shape[1:] == (3, 20, 12) and images.dtype == torch.uint8
        assert len(set(labels.tolist())) <= 2
        seen += labels.tolist()
    assert sorted(seen) == ds.labels.tolist()


def test_subset_keeps_classes_and_files(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = stream_image_folder(folder, image_size=8)
    part = ds.subset([0, 7, 23])
    assert len(part) == 3 and part.class_names == ds.class_names
    assert part.labels.tolist() == [ds.labels[i].item() for i in (0, 7, 23)]
    assert torch.equal(part[1][0], ds[7][0])


def test_write_image_fixture_makes_the_mode_it_claims(tmp_path):
    write_image(tmp_path / "x.png", "I;16", (5, 4), class_colour(0), 0)
    with Image.open(tmp_path / "x.png") as image:
        assert image.mode.startswith("I") and image.size == (5, 4)
