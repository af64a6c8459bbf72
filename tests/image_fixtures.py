"""Tiny real image folders on disk for the image tests: PNG and JPEG, mixed sizes and modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# One (mode, suffix, (width, height)) per file, cycled over the files of each class, so every
# class mixes formats, modes and aspect ratios.
VARIANTS = (
    ("RGB", ".jpg", (40, 30)),
    ("L", ".png", (24, 24)),
    ("RGBA", ".png", (30, 45)),
    ("I;16", ".png", (20, 28)),
    ("P", ".png", (33, 21)),
    ("RGB", ".png", (64, 48)),
)


def class_colour(label: int) -> np.ndarray:
    """A distinct base colour per class, so a model can separate the classes."""
    rng = np.random.default_rng(1000 + label)
    return rng.integers(30, 226, 3)


def write_image(path: Path, mode: str, size: tuple[int, int], colour: np.ndarray, seed: int):
    """One image of ``mode`` whose pixels are ``colour`` plus a little noise."""
    rng = np.random.default_rng(seed)
    width, height = size
    rgb = np.clip(colour + rng.integers(-20, 21, (height, width, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(rgb, "RGB")
    if mode == "L":
        image = image.convert("L")
    elif mode == "RGBA":
        image = image.convert("RGBA")
        image.putalpha(255)
    elif mode == "I;16":
        grey = np.asarray(image.convert("L"), dtype=np.uint16) * 257
        image = Image.fromarray(grey)  # uint16 gives mode I;16
    elif mode == "P":
        image = image.quantize(16)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def make_image_folder(
    root: Path, n_classes: int = 4, per_class: int = 6, corrupt: bool = True
) -> Path:
    """``root/class_<c>/<i>.<png|jpg>``; with ``corrupt`` one extra file that is not an image
    (in class_0) and a README.txt that is ignored."""
    for label in range(n_classes):
        for i in range(per_class):
            mode, suffix, size = VARIANTS[(i + label) % len(VARIANTS)]
            path = root / f"class_{label}" / f"{i:03d}{suffix}"
            write_image(path, mode, size, class_colour(label), seed=label * 100 + i)
    if corrupt:
        (root / "class_0" / "broken.jpg").write_bytes(b"this is not a jpeg")
        (root / "README.txt").write_text("not a class")
    return root


def truncate(path: Path, keep: int = 200) -> None:
    """Cut a file short: the header reads, the pixels do not."""
    path.write_bytes(path.read_bytes()[:keep])
