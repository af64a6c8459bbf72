"""Opening untrusted images safely: size limits, decompression bombs, clear errors.

Pillow reads only an image's header on ``Image.open``; the pixel count is checked against
``max_pixels`` *before* the pixels are decoded, so a small file that would decompress to
gigabytes (a "decompression bomb") is refused without allocating them. Pillow's own guard
(``Image.MAX_IMAGE_PIXELS``, a warning at 89 M pixels and an error at twice that) is kept as a
second line and turned into the same :class:`ImageError`.

Example:
    >>> import io
    >>> from PIL import Image
    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (4, 3)).save(buffer, format="PNG")
    >>> open_image(buffer.getvalue()).size
    (4, 3)
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from tripletlab.errors import DataError

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = ["DEFAULT_MAX_PIXELS", "THUMBNAIL_SIZE", "ImageError", "open_image", "thumbnail_png"]

#: 40 M pixels: above any camera photo a recognizer is fed (a 45 MP full-frame sensor aside),
#: far below what would exhaust memory when decoded (40 M × 4 bytes = 160 MB).
DEFAULT_MAX_PIXELS = 40_000_000
#: Thumbnails kept in the gallery and shown on the web page: 96 px fits a result card.
THUMBNAIL_SIZE = 96


class ImageError(DataError):
    """An image that cannot be read, or is refused (too many pixels, not an image)."""


def open_image(
    source: bytes | str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None
) -> PILImage.Image:
    """Decode ``source`` (encoded bytes or a file path) into a loaded Pillow image.

    Raises:
        ImageError: not an image, truncated/corrupt, or more than ``max_pixels`` pixels.
    """
    from PIL import Image, UnidentifiedImageError

    label = name or (str(source) if isinstance(source, (str, Path)) else "upload")
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with warnings.catch_warnings():
            # Pillow warns (and does not stop) between MAX_IMAGE_PIXELS and twice that.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(stream)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"{label}: {width}×{height} = {width * height} pixels is more than the "
                    f"limit of {max_pixels} (a decompression bomb or an oversized image)"
                )
            image.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{label}: refused as a decompression bomb ({exc})") from None
    except FileNotFoundError:
        raise ImageError(f"{label}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{label}: cannot read the image ({exc})") from None
    return image


def thumbnail_png(image: PILImage.Image, size: int = THUMBNAIL_SIZE) -> bytes:
    """A PNG of ``image`` shrunk (aspect kept) to fit ``size`` × ``size``.

    Example:
        >>> from PIL import Image
        >>> png = thumbnail_png(Image.new("L", (300, 150)))
        >>> png[:4] == b"\\x89PNG"
        True
    """
    copy = image.convert("RGB") if image.mode not in ("L", "RGB") else image.copy()
    copy.thumbnail((size, size))
    buffer = io.BytesIO()
    copy.save(buffer, format="PNG")
    return buffer.getvalue()
