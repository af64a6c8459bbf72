"""Small file helpers of the deploy package (standard library only): atomic writes, hashes.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.json"
    >>> write_json_atomic(path, {"x": 1})
    >>> read_json(path)
    {'x': 1}
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from tripletlab.errors import ConfigError

__all__ = ["atomic_write", "file_sha256", "read_json", "write_json_atomic"]


def read_json(path: str | Path) -> Any:
    """Parse a JSON file (ConfigError naming the file when missing or malformed)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"missing file: {path}") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read it as JSON ({exc})") from None


def file_sha256(path: str | Path) -> str:
    """The SHA-256 hex digest of a file (the model's fingerprint in a gallery store)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON via a temporary file and ``os.replace``."""
    text = json.dumps(data, indent=2) + "\n"
    atomic_write(Path(path), lambda handle: handle.write(text.encode()))


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` through ``write(handle)`` into a temporary file, fsync, ``os.replace``:
    a crash leaves the old file or the new one, never a truncated one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
