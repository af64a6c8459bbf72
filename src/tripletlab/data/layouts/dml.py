"""Deep-metric-learning benchmark layouts: CUB-200-2011, Cars196, Stanford Online Products,
In-shop Clothes — with the class-disjoint splits of the literature (Song et al. 2016;
Musgrave et al. 2020).

=========  =================================================  ================================
layout     files read (under ``root``)                        splits
=========  =================================================  ================================
cub200     ``images.txt`` (``id path``),                      classes 1–100 → ``train``,
           ``image_class_labels.txt`` (``id class``),         101–200 → ``test`` (not the
           ``classes.txt`` (names, optional), ``images/``     classification split file)
cars196    ``cars_annos.mat`` (scipy.io: ``annotations``      classes 1–98 → ``train``,
           with ``relative_im_path`` and ``class``,           99–196 → ``test``
           ``class_names``); images at their relative path
           (``car_ims/000001.jpg``)
sop        ``Ebay_train.txt``, ``Ebay_test.txt``               as the two files say (11,318 /
           (``image_id class_id super_class_id path``)       11,316 classes)
inshop     ``list_eval_partition.txt`` (in ``root`` or        ``train`` / ``query`` /
           ``root/Eval``: a count line, a header, then        ``gallery`` from the third
           ``img/… id_00000002 query``); images under         column
           ``root`` or ``root/Img``
=========  =================================================  ================================

CUB and Cars may also be given as the parent of ``CUB_200_2011/`` (resp. of the folder
holding ``cars_annos.mat``), SOP as the parent of ``Stanford_Online_Products/``.
Protocols: ``self`` (each ``test`` image queries all the others) for CUB, Cars and SOP;
``query_gallery`` for In-shop.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tripletlab.data.layouts.split import (
    Layout,
    LayoutSplit,
    check_files_exist,
    first_existing,
    read_rows,
    require_dir,
    require_file,
)
from tripletlab.errors import DataError

#: Last training class of the class-disjoint splits (first half of the classes).
CUB_TRAIN_CLASSES = 100
CARS_TRAIN_CLASSES = 98
_INSHOP_ROLES = ("train", "query", "gallery")


def _class_split(
    name: str, root: Path, paths: list[Path], labels: np.ndarray, last_train: int, names: dict
) -> Layout:
    check_files_exist(paths, f"{name} images")
    whole = LayoutSplit(paths, labels, class_names=names)
    splits = {
        "train": whole.subset(labels <= last_train),
        "test": whole.subset(labels > last_train),
    }
    return Layout(name, root, splits, "self")


def load_cub200_layout(root: str | Path) -> Layout:
    """CUB-200-2011 (Wah et al. 2011) with classes 1–100 to train and 101–200 to test.

    Raises:
        DataError: ``images.txt``, ``image_class_labels.txt`` or a listed image missing.
    """
    root = Path(root).expanduser()
    base = first_existing(
        [root / "CUB_200_2011" / "images.txt", root / "images.txt"], "CUB images.txt"
    ).parent
    images = {f[0]: f[1] for f in read_rows(base / "images.txt", 2)}
    classes = {
        f[0]: int(f[1])
        for f in read_rows(
            require_file(base / "image_class_labels.txt", "CUB image_class_labels.txt"), 2
        )
    }
    unlabelled = images.keys() - classes.keys()
    if unlabelled:
        raise DataError(
            f"{base / 'image_class_labels.txt'} has no class for image id {min(unlabelled)}"
        )
    ids = sorted(images, key=int)
    names = {}
    if (base / "classes.txt").is_file():
        names = {int(f[0]): f[1] for f in read_rows(base / "classes.txt", 2)}
    paths = [base / "images" / images[i] for i in ids]
    labels = np.array([classes[i] for i in ids], dtype=np.int64)
    return _class_split("cub200", base, paths, labels, CUB_TRAIN_CLASSES, names)


def load_cars196_layout(root: str | Path) -> Layout:
    """Cars196 (Krause et al. 2013) from ``cars_annos.mat``: classes 1–98 train, 99–196 test.

    Raises:
        DataError: ``cars_annos.mat`` missing or without the expected fields, or a listed
            image missing.
    """
    from scipy.io import loadmat  # scipy is a core dependency; loaded only for this layout

    root = Path(root).expanduser()
    annos = first_existing(
        [root / "cars_annos.mat", root / "stanford_cars" / "cars_annos.mat"],
        "Cars196 cars_annos.mat",
    )
    mat = loadmat(str(annos), squeeze_me=True, struct_as_record=False)
    if "annotations" not in mat:
        raise DataError(f"{annos} has no 'annotations' array")
    records = np.atleast_1d(mat["annotations"])
    try:
        relative = [str(r.relative_im_path) for r in records]
        labels = np.array([int(r.__dict__["class"]) for r in records], dtype=np.int64)
    except (AttributeError, KeyError) as error:
        raise DataError(f"{annos}: annotations lack relative_im_path / class ({error})") from None
    names = {}
    if "class_names" in mat:
        names = {i + 1: str(n) for i, n in enumerate(np.atleast_1d(mat["class_names"]))}
    paths = [annos.parent / r for r in relative]
    return _class_split("cars196", annos.parent, paths, labels, CARS_TRAIN_CLASSES, names)


def load_sop_layout(root: str | Path) -> Layout:
    """Stanford Online Products (Song et al. 2016): ``Ebay_train.txt`` / ``Ebay_test.txt``.

    Raises:
        DataError: either list file or a listed image missing.
    """
    root = Path(root).expanduser()
    base = first_existing(
        [root / "Stanford_Online_Products" / "Ebay_train.txt", root / "Ebay_train.txt"],
        "SOP Ebay_train.txt",
    ).parent
    splits = {}
    for split, file_name in (("train", "Ebay_train.txt"), ("test", "Ebay_test.txt")):
        rows = read_rows(require_file(base / file_name, f"SOP {file_name}"), 4, skip=1)
        paths = [base / f[3] for f in rows]
        check_files_exist(paths, f"images of {file_name}")
        splits[split] = LayoutSplit(paths, np.array([int(f[1]) for f in rows], dtype=np.int64))
    return Layout("sop", base, splits, "self")


def load_inshop_layout(root: str | Path) -> Layout:
    """In-shop Clothes Retrieval (Liu et al. 2016) from ``list_eval_partition.txt``.

    Item ids ``id_00000002`` become the integer labels 2.

    Raises:
        DataError: the partition file or a listed image missing, or an unknown status.
    """
    root = Path(root).expanduser()
    require_dir(root, "In-shop dataset folder")
    listing = first_existing(
        [root / "list_eval_partition.txt", root / "Eval" / "list_eval_partition.txt"],
        "In-shop list_eval_partition.txt",
    )
    rows = read_rows(listing, 3, skip=2)
    image_root = root / "Img" if (root / "Img" / rows[0][0]).exists() else root
    splits = {}
    for role in _INSHOP_ROLES:
        chosen = [f for f in rows if f[2] == role]
        paths = [image_root / f[0] for f in chosen]
        check_files_exist(paths, f"{role} images of {listing.name}")
        labels = np.array([_item_id(f[1], listing) for f in chosen], dtype=np.int64)
        splits[role] = LayoutSplit(paths, labels)
    unknown = {f[2] for f in rows} - set(_INSHOP_ROLES)
    if unknown:
        raise DataError(f"{listing}: unknown evaluation status {sorted(unknown)[0]!r}")
    return Layout("inshop", root, splits, "query_gallery")


def _item_id(text: str, listing: Path) -> int:
    digits = text.removeprefix("id_")
    if not digits.isdigit():
        raise DataError(f"{listing}: item id {text!r} is not id_<digits>")
    return int(digits)
