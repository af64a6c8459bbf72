"""Miniature copies of the field layouts, written to disk with real file names and index files.

Every image is a real 8×8 JPEG (a flat colour per identity), so image readers and report grids
can open them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

_SIZE = 8


def write_image(path: Path, label: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = tuple(int(v) for v in (np.array([37, 91, 151]) * (abs(label) + 1)) % 256)
    Image.new("RGB", (_SIZE, _SIZE), colour).save(path, format="JPEG")
    return path


# Market-1501 style names: (identity, camera, frame). Identity −1 is junk, 0 a distractor.
MARKET_QUERY = [(1, 1, 100), (2, 2, 200), (3, 1, 300)]
MARKET_GALLERY = [
    (1, 1, 101),  # same identity, same camera as query 0: excluded for it
    (1, 2, 102),
    (2, 1, 201),
    (2, 2, 202),  # same identity and camera as query 1: excluded
    (-1, 1, 900),  # junk
    (0, 3, 901),  # distractor
    (3, 1, 301),  # query 2's only match is in its own camera: query 2 has no valid match
]
MARKET_TRAIN = [(5, 1, 10), (5, 2, 11), (6, 1, 12), (6, 3, 13)]


def market_name(pid: int, cam: int, frame: int) -> str:
    ident = "-1" if pid == -1 else f"{pid:04d}"
    return f"{ident}_c{cam}s1_{frame:06d}_01.jpg"


def build_market1501(root: Path) -> Path:
    for folder, rows in (
        ("query", MARKET_QUERY),
        ("bounding_box_test", MARKET_GALLERY),
        ("bounding_box_train", MARKET_TRAIN),
    ):
        for pid, cam, frame in rows:
            write_image(root / folder / market_name(pid, cam, frame), pid)
    return root


def build_msmt17(root: Path) -> Path:
    lists = {
        "list_train.txt": ("train", [(0, 1), (0, 2), (1, 3)]),
        "list_val.txt": ("train", [(1, 4)]),
        "list_query.txt": ("test", [(0, 1)]),
        "list_gallery.txt": ("test", [(0, 2), (0, 1), (1, 2)]),
    }
    counter = 0
    for list_name, (folder, rows) in lists.items():
        lines = []
        for pid, cam in rows:
            counter += 1
            rel = f"{pid:04d}/{pid:04d}_{counter:03d}_{cam:02d}_0303morning_0015_0.jpg"
            write_image(root / folder / rel, pid)
            lines.append(f"{rel} {pid}")
        (root / list_name).write_text("\n".join(lines) + "\n")
    return root


# LFW: 2 folds × 2 pairs of each kind.
LFW_PEOPLE = {"Ann_Lee": 3, "Bob_Ray": 2, "Cy_Moe": 2}
LFW_PAIRS = """2\t2
Ann_Lee\t1\t2
Bob_Ray\t1\t2
Ann_Lee\t1\tBob_Ray\t1
Ann_Lee\t3\tCy_Moe\t2
Cy_Moe\t1\t2
Ann_Lee\t2\t3
Bob_Ray\t2\tCy_Moe\t1
Ann_Lee\t2\tCy_Moe\t1
"""


def build_lfw(root: Path) -> Path:
    for label, (name, count) in enumerate(LFW_PEOPLE.items()):
        for n in range(1, count + 1):
            write_image(root / "lfw" / name / f"{name}_{n:04d}.jpg", label)
    (root / "pairs.txt").write_text(LFW_PAIRS)
    return root


def build_cub(root: Path, classes: tuple[int, ...] = (1, 2, 101, 102), per_class: int = 2) -> Path:
    base = root / "CUB_200_2011"
    images, labels, names = [], [], []
    for cls in classes:
        folder = f"{cls:03d}.Bird_{cls}"
        names.append(f"{cls} {folder}")
        for k in range(per_class):
            rel = f"{folder}/Bird_{cls}_{k:04d}_{cls}.jpg"
            write_image(base / "images" / rel, cls)
            images.append(rel)
            labels.append(cls)
    (base / "images.txt").write_text("".join(f"{i + 1} {rel}\n" for i, rel in enumerate(images)))
    (base / "image_class_labels.txt").write_text(
        "".join(f"{i + 1} {c}\n" for i, c in enumerate(labels))
    )
    (base / "classes.txt").write_text("\n".join(names) + "\n")
    return root


def build_cars(root: Path, classes: tuple[int, ...] = (1, 98, 99, 196)) -> Path:
    from scipy.io import savemat

    records = np.zeros(
        len(classes) * 2,
        dtype=[("relative_im_path", object), ("class", object), ("test", object)],
    )
    for i, cls in enumerate(np.repeat(classes, 2)):
        rel = f"car_ims/{i + 1:06d}.jpg"
        write_image(root / rel, int(cls))
        records[i] = (rel, np.uint8(cls), np.uint8(i % 2))
    names = np.array([f"Car {c}" for c in range(1, 197)], dtype=object)
    savemat(str(root / "cars_annos.mat"), {"annotations": records, "class_names": names})
    return root


def build_sop(root: Path) -> Path:
    base = root / "Stanford_Online_Products"
    header = "image_id class_id super_class_id path\n"
    rows = {
        "Ebay_train.txt": [(1, 1), (2, 1), (3, 2), (4, 2)],
        "Ebay_test.txt": [(5, 3), (6, 3), (7, 4)],
    }
    for file_name, items in rows.items():
        lines = [header]
        for image_id, cls in items:
            rel = f"bicycle_final/{cls}11085122871_{image_id}.JPG"
            write_image(base / rel, cls)
            lines.append(f"{image_id} {cls} 1 {rel}\n")
        (base / file_name).write_text("".join(lines))
    return root


INSHOP_ROWS = [
    ("img/WOMEN/Dresses/id_00000002/02_1_front.jpg", "id_00000002", "train"),
    ("img/WOMEN/Dresses/id_00000002/02_2_side.jpg", "id_00000002", "train"),
    ("img/MEN/Denim/id_00000080/01_1_front.jpg", "id_00000080", "query"),
    ("img/MEN/Denim/id_00000080/01_2_side.jpg", "id_00000080", "gallery"),
    ("img/MEN/Denim/id_00000081/01_1_front.jpg", "id_00000081", "query"),
    ("img/MEN/Denim/id_00000081/01_3_back.jpg", "id_00000081", "gallery"),
]


def build_inshop(root: Path) -> Path:
    lines = [f"{len(INSHOP_ROWS)}\n", "image_name item_id evaluation_status\n"]
    for rel, item, status in INSHOP_ROWS:
        write_image(root / "Img" / rel, int(item[3:]))
        lines.append(f"{rel}   {item}   {status}\n")
    (root / "Eval").mkdir(parents=True, exist_ok=True)
    (root / "Eval" / "list_eval_partition.txt").write_text("".join(lines))
    return root
