"""Field layouts read from miniature copies on disk (real names, real index files)."""

from __future__ import annotations

import numpy as np
import pytest

from layout_builders import (
    INSHOP_ROWS,
    MARKET_GALLERY,
    MARKET_QUERY,
    build_cars,
    build_cub,
    build_inshop,
    build_lfw,
    build_market1501,
    build_msmt17,
    build_sop,
    market_name,
    write_image,
)
from tripletlab.data.layouts import is_layout_spec, load_layout, parse_reid_name
from tripletlab.errors import DataError, TripletlabError


def test_market1501_parses_identity_and_camera_and_keeps_junk_and_distractors(tmp_path):
    layout = load_layout(f"market1501:{build_market1501(tmp_path / 'Market')}")
    assert layout.protocol == "reid"
    query, gallery = layout.split("query"), layout.split("gallery")
    assert sorted(zip(query.labels.tolist(), query.cameras.tolist(), strict=True)) == sorted(
        (p, c) for p, c, _ in MARKET_QUERY
    )
    assert sorted(gallery.labels.tolist()) == sorted(p for p, _, _ in MARKET_GALLERY)
    assert -1 in gallery.labels and 0 in gallery.labels
    names = {p.name for p in gallery.paths}
    assert "-1_c1s1_000900_01.jpg" in names
    assert len(layout.split("train")) == 4
    assert all(p.is_file() for p in gallery.paths)


def test_market1501_found_inside_a_parent_folder(tmp_path):
    build_market1501(tmp_path / "Market-1501-v15.09.15")
    layout = load_layout(f"market1501:{tmp_path}")
    assert layout.root.name == "Market-1501-v15.09.15"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("0002_c1s1_000451_03.jpg", (2, 1)),
        ("-1_c3s2_000001_01.jpg", (-1, 3)),
        ("0000_c6s1_012345_02.jpg", (0, 6)),
        ("0001_c2_f0046182.jpg", (1, 2)),
        ("0776_c014_00071910_0.jpg", (776, 14)),
    ],
)
def test_reid_name_parsing(name, expected):
    assert parse_reid_name(name) == expected


def test_missing_query_folder_is_named(tmp_path):
    build_market1501(tmp_path)
    for image in (tmp_path / "query").iterdir():
        image.unlink()
    (tmp_path / "query").rmdir()
    with pytest.raises(DataError, match="query"):
        load_layout(f"market1501:{tmp_path}")


def test_bad_reid_file_name_is_an_error(tmp_path):
    build_market1501(tmp_path)
    write_image(tmp_path / "query" / "person.jpg", 1)
    with pytest.raises(DataError, match=r"person\.jpg"):
        load_layout(f"market1501:{tmp_path}")


def test_veri_uses_its_folder_names(tmp_path):
    for folder, name in (
        ("image_train", "0001_c001_00016450_0.jpg"),
        ("image_query", "0002_c002_00030600_0.jpg"),
        ("image_test", "0002_c003_00030700_1.jpg"),
    ):
        write_image(tmp_path / folder / name, 1)
    layout = load_layout(f"veri:{tmp_path}")
    assert layout.split("gallery").cameras.tolist() == [3]
    assert layout.split("query").labels.tolist() == [2]


def test_msmt17_reads_lists_and_camera_from_the_name(tmp_path):
    layout = load_layout(f"msmt17:{build_msmt17(tmp_path)}")
    train = layout.split("train")
    assert train.labels.tolist() == [0, 0, 1, 1]  # list_train + list_val
    assert train.cameras.tolist() == [1, 2, 3, 4]
    assert layout.split("gallery").cameras.tolist() == [2, 1, 2]
    assert all(p.is_file() for p in layout.split("query").paths)


def test_msmt17_missing_listed_image_is_named(tmp_path):
    build_msmt17(tmp_path)
    victim = next((tmp_path / "test").rglob("*.jpg"))
    victim.unlink()
    with pytest.raises(DataError, match=victim.name):
        load_layout(f"msmt17:{tmp_path}")


def test_lfw_pairs_folds_and_images(tmp_path):
    layout = load_layout(f"lfw:{build_lfw(tmp_path)}")
    pairs, test = layout.pairs, layout.split("test")
    assert layout.protocol == "verification"
    assert len(pairs) == 8 and pairs.n_folds == 2
    assert pairs.folds.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert pairs.same.tolist() == [True, True, False, False, True, True, False, False]
    first = test.paths[pairs.first[3]].name, test.paths[pairs.second[3]].name
    assert first == ("Ann_Lee_0003.jpg", "Cy_Moe_0002.jpg")
    same_label = test.labels[pairs.first] == test.labels[pairs.second]
    assert same_label.tolist() == pairs.same.tolist()
    assert test.class_names[int(test.labels[pairs.first[0]])] == "Ann_Lee"


def test_lfw_truncated_pairs_file_is_refused(tmp_path):
    build_lfw(tmp_path)
    text = (tmp_path / "pairs.txt").read_text().splitlines()
    (tmp_path / "pairs.txt").write_text("\n".join(text[:-1]) + "\n")
    with pytest.raises(DataError, match="announces"):
        load_layout(f"lfw:{tmp_path}")


def test_lfw_missing_image_is_named(tmp_path):
    build_lfw(tmp_path)
    (tmp_path / "lfw" / "Cy_Moe" / "Cy_Moe_0002.jpg").unlink()
    with pytest.raises(DataError, match=r"Cy_Moe_0002\.jpg"):
        load_layout(f"lfw:{tmp_path}")


def test_cub_class_disjoint_split(tmp_path):
    layout = load_layout(f"cub200:{build_cub(tmp_path)}")
    assert layout.protocol == "self"
    assert layout.split("train").labels.tolist() == [1, 1, 2, 2]
    assert layout.split("test").labels.tolist() == [101, 101, 102, 102]
    assert layout.split("test").class_names[101] == "101.Bird_101"
    assert layout.split("test").paths[0].name == "Bird_101_0000_101.jpg"


def test_cub_missing_label_file_is_named(tmp_path):
    build_cub(tmp_path)
    (tmp_path / "CUB_200_2011" / "image_class_labels.txt").unlink()
    with pytest.raises(DataError, match=r"image_class_labels\.txt"):
        load_layout(f"cub200:{tmp_path}")


def test_cars196_from_cars_annos_mat(tmp_path):
    layout = load_layout(f"cars196:{build_cars(tmp_path)}")
    assert layout.split("train").labels.tolist() == [1, 1, 98, 98]
    assert layout.split("test").labels.tolist() == [99, 99, 196, 196]
    assert layout.split("test").class_names[196] == "Car 196"
    assert layout.split("test").paths[0].name == "000005.jpg"


def test_cars196_without_annotations_file(tmp_path):
    with pytest.raises(DataError, match=r"cars_annos\.mat"):
        load_layout(f"cars196:{tmp_path}")


def test_sop_train_and_test_lists(tmp_path):
    layout = load_layout(f"sop:{build_sop(tmp_path)}")
    assert layout.split("train").labels.tolist() == [1, 1, 2, 2]
    assert layout.split("test").labels.tolist() == [3, 3, 4]
    assert layout.split("test").paths[2].name == "411085122871_7.JPG"


def test_inshop_query_gallery_partition(tmp_path):
    layout = load_layout(f"inshop:{build_inshop(tmp_path)}")
    assert layout.protocol == "query_gallery"
    assert layout.split("query").labels.tolist() == [80, 81]
    assert layout.split("gallery").labels.tolist() == [80, 81]
    assert layout.split("train").labels.tolist() == [2, 2]
    assert layout.split("gallery").paths[1].as_posix().endswith(INSHOP_ROWS[5][0])


def test_manifest_with_roles_and_cameras_is_a_reid_protocol(tmp_path):
    rows = ["path,label,camera,role"]
    for i, (pid, cam, frame) in enumerate(MARKET_QUERY + MARKET_GALLERY):
        name = market_name(pid, cam, frame)
        write_image(tmp_path / "img" / name, pid)
        rows.append(f"img/{name},{pid},{cam},{'query' if i < len(MARKET_QUERY) else 'gallery'}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    layout = load_layout(str(tmp_path / "m.csv"))
    assert layout.protocol == "reid"
    assert layout.split("gallery").labels.tolist() == [p for p, _, _ in MARKET_GALLERY]
    assert layout.split("query").cameras.tolist() == [c for _, c, _ in MARKET_QUERY]


def test_manifest_string_labels_and_splits(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        write_image(tmp_path / name, 1)
    (tmp_path / "m.csv").write_text(
        "Path,Label,Split\na.png,dog,train\nb.png,cat,test\nc.png,dog,\n"
    )
    layout = load_layout(f"manifest:{tmp_path / 'm.csv'}")
    assert layout.protocol == "self"
    assert layout.split("train").labels.tolist() == [1]
    assert layout.split("test").labels.tolist() == [0, 1]
    assert layout.split("test").class_names == {0: "cat", 1: "dog"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path\na.png\n", "missing column 'label'"),
        ("path,label\nnope.png,1\n", "nope.png"),
        ("path,label,camera\na.png,1,left\n", "line 2: camera"),
        ("path,label,split\na.png,1,validation\n", "split 'validation'"),
        ("path,label,role\na.png,1,query\n", "gallery role"),
    ],
)
def test_manifest_errors_name_the_problem(tmp_path, text, message):
    write_image(tmp_path / "a.png", 1)
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        load_layout(str(tmp_path / "m.csv"))


def test_layout_spec_errors(tmp_path):
    assert is_layout_spec("lfw:/x") and not is_layout_spec("/x/y")
    with pytest.raises(TripletlabError, match="unknown dataset layout 'mnist'"):
        load_layout("mnist:/x")
    with pytest.raises(TripletlabError, match="missing"):
        load_layout(f"sop:{tmp_path}")
    with pytest.raises(TripletlabError, match="no 'query' split"):
        load_layout(f"cub200:{build_cub(tmp_path)}").split("query")


def test_subset_keeps_cameras(tmp_path):
    gallery = load_layout(f"market1501:{build_market1501(tmp_path)}").split("gallery")
    clean = gallery.subset(gallery.labels > 0)
    assert (clean.labels > 0).all() and len(clean.cameras) == len(clean)
    assert np.isin(clean.labels, [1, 2, 3]).all()
