"""A gallery that grows and never loses an acknowledged enrolment: SQLite + a search index.

The store is one SQLite file (standard library) holding identities, their images (a file
reference, a thumbnail PNG) and each image's embedding, plus a ``meta`` table (embedding
dimension, metric, the fingerprint of the model that made the embeddings). Durability:

* write-ahead log (``journal_mode=WAL``) with ``synchronous=FULL``: a transaction that has
  returned from COMMIT is on disk — :meth:`GalleryStore.enrol` returns (the acknowledgement)
  only after that, so a ``kill -9`` (or a power cut) at any later moment keeps it, and one
  at any earlier moment leaves no trace of it (one enrolment = one transaction);
* writers take the lock up front (``BEGIN IMMEDIATE``) and wait ``busy_timeout``; WAL lets
  any number of processes read while one writes.

The search index (:class:`~tripletlab.deploy.vector_index.VectorIndex`, numpy brute force) is
kept in step with the table: it is rebuilt from the table on open, updated in memory after
each of this store's own commits, and rebuilt when SQLite's ``PRAGMA data_version`` shows that
*another* connection (another server on the same file) has committed since.
:meth:`GalleryStore.check_index` compares the two.

Example:
    >>> import numpy as np, tempfile
    >>> store = GalleryStore(tempfile.mkdtemp() + "/gallery.sqlite", dim=2, metric="euclidean")
    >>> store.enrol("alice", np.array([[0.0, 1.0]]), refs=["a.png"])
    [1]
    >>> [(m.identity, m.distance) for m in store.search(np.array([[0.0, 0.0]]), 1)[0]]
    [('alice', 1.0)]
    >>> store.close()
"""

from __future__ import annotations

import sqlite3
import threading
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tripletlab.deploy.vector_index import METRICS, VectorIndex
from tripletlab.errors import ConfigError, DataError

__all__ = [
    "STORE_FORMAT",
    "GalleryStore",
    "IdentityInfo",
    "Match",
    "StoreError",
    "UnknownIdentityError",
]

STORE_FORMAT = "tripletlab-gallery-store/1"
#: How long a writer waits for another process's transaction before giving up (SQLite
#: busy_timeout): far longer than any one enrolment takes.
BUSY_TIMEOUT_S = 30.0
#: Identity names are shown on a web page and used in URLs: printable, at most this long.
MAX_NAME_LENGTH = 200

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    ref TEXT,
    thumbnail BLOB,
    embedding BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS images_by_identity ON images(identity_id);
"""


class StoreError(DataError):
    """The store cannot be used (another model's gallery, a bad name, an unknown identity)."""


class UnknownIdentityError(StoreError):
    """The named identity is not in the gallery."""


@dataclass(frozen=True)
class Match:
    """An identity found for a query: its name, its nearest image and the distance."""

    identity: str
    image_id: int
    distance: float


@dataclass(frozen=True)
class IdentityInfo:
    """An enrolled identity: name, number of images, the id of its first image."""

    identity: str
    images: int
    first_image_id: int | None


class GalleryStore:
    """Identities + images + embeddings in SQLite, searched by an index kept in step.

    Args:
        path: the SQLite file (created with its folder when missing).
        dim: embedding dimension (required for a new store; checked against an existing one).
        metric: one of :data:`~tripletlab.deploy.vector_index.METRICS`.
        model_id: a fingerprint of the model that makes the embeddings (e.g. its SHA-256);
            a store made by another model is refused, since its embeddings would not compare.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        dim: int | None = None,
        metric: str | None = None,
        model_id: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()  # one connection, shared by a server's worker threads
        self._db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            with self._transaction():
                self._create_tables()
                meta = self._settle_meta(dim, metric, model_id)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"{self.path}: not a usable gallery store ({exc})") from None
        except BaseException:
            self._db.close()
            raise
        self.dim, self.metric = int(meta["dim"]), meta["metric"]
        self.model_id = meta.get("model_id") or None
        self._index = VectorIndex(self.dim, self.metric)
        self._names: dict[int, str] = {}
        self._seen_version = -1
        self._sync(force=True)

    # -- setup ---------------------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def _create_tables(self) -> None:
        # One statement at a time: executescript() would commit the open transaction.
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                self._db.execute(statement)

    def _settle_meta(self, dim: int | None, metric: str | None, model_id: str | None) -> dict:
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if not meta:
            if dim is None or metric is None:
                raise StoreError(f"{self.path}: a new gallery store needs dim and metric")
            if metric not in METRICS:
                raise ConfigError(f"metric must be one of {METRICS}; got {metric!r}")
            if int(dim) < 1:
                raise ConfigError(f"dim must be positive; got {dim!r}")
            meta = {"format": STORE_FORMAT, "dim": str(int(dim)), "metric": metric}
            if model_id:
                meta["model_id"] = model_id
            self._db.executemany("INSERT INTO meta VALUES (?, ?)", sorted(meta.items()))
            return meta
        if meta.get("format") != STORE_FORMAT:
            raise StoreError(f"{self.path}: not a {STORE_FORMAT} file")
        for key, wanted in (("dim", dim), ("metric", metric), ("model_id", model_id)):
            have = meta.get(key)
            if wanted is not None and have is not None and str(wanted) != have:
                raise StoreError(
                    f"{self.path} was made with {key} = {have}, not {wanted}: its embeddings "
                    "do not match this model (use another gallery file, or re-enrol)"
                )
        return meta

    # -- keeping the index in step -------------------------------------------------------

    def _sync(self, force: bool = False) -> None:
        """Rebuild the index from the table if another connection committed since."""
        version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
        if not force and version == self._seen_version:
            return
        with _ReadSnapshot(self._db):
            names = dict(self._db.execute("SELECT id, name FROM identities").fetchall())
            rows = self._db.execute(
                "SELECT id, identity_id, embedding FROM images ORDER BY id"
            ).fetchall()
        self._names = names
        self._index.clear()
        if rows:
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            owners = np.array([r[1] for r in rows], dtype=np.int64)
            vectors = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4")
            self._index.add(ids, owners, vectors.reshape(len(rows), self.dim))
        self._seen_version = version

    def check_index(self) -> None:
        """Raise StoreError unless the index holds exactly the table's rows and vectors."""
        with self._lock:
            self._sync()
            rows = self._db.execute("SELECT id, identity_id, embedding FROM images ORDER BY id")
            table = rows.fetchall()
            order = np.argsort(self._index.image_ids)
            ids = self._index.image_ids[order]
            if [r[0] for r in table] != ids.tolist():
                raise StoreError(f"index and table disagree on image ids ({self.path})")
            owners = self._index.identity_ids[order]
            vectors = self._index.embeddings[order]
            for row, owner, vector in zip(table, owners, vectors, strict=True):
                stored = np.frombuffer(row[2], dtype="<f4")
                if row[1] != owner or not np.array_equal(stored, vector):
                    raise StoreError(f"index and table disagree on image {row[0]} ({self.path})")

    # -- writes --------------------------------------------------------------------------

    def enrol(
        self,
        identity: str,
        embeddings: np.ndarray,
        *,
        refs: Sequence[str | None] | None = None,
        thumbnails: Sequence[bytes | None] | None = None,
    ) -> list[int]:
        """Add images of ``identity`` (created if new); returns their image ids.

        One transaction: when this returns, the enrolment is on disk (see the module
        docstring); when it raises, nothing of it was stored.
        """
        name = _check_name(identity)
        vectors = self._check_vectors(embeddings)
        n = len(vectors)
        refs = list(refs) if refs is not None else [None] * n
        thumbs = list(thumbnails) if thumbnails is not None else [None] * n
        if len(refs) != n or len(thumbs) != n:
            raise DataError(f"{n} embeddings but {len(refs)} refs and {len(thumbs)} thumbnails")
        now = time.time()
        with self._lock:
            self._sync()
            with self._transaction():
                self._db.execute(
                    "INSERT OR IGNORE INTO identities (name, created) VALUES (?, ?)", (name, now)
                )
                (owner,) = self._db.execute(
                    "SELECT id FROM identities WHERE name = ?", (name,)
                ).fetchone()
                ids = []
                for vector, ref, thumb in zip(vectors, refs, thumbs, strict=True):
                    cursor = self._db.execute(
                        "INSERT INTO images (identity_id, ref, thumbnail, embedding, created) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (owner, ref, thumb, vector.astype("<f4").tobytes(), now),
                    )
                    ids.append(int(cursor.lastrowid or 0))
            # Committed: now the in-memory index follows (it cannot fail half-way).
            self._names[owner] = name
            self._index.add(np.array(ids), np.full(n, owner), vectors)
        return ids

    def remove(self, identity: str) -> int:
        """Remove ``identity`` and its images; returns how many images (StoreError if unknown)."""
        with self._lock:
            self._sync()
            with self._transaction():
                row = self._db.execute(
                    "SELECT id FROM identities WHERE name = ?", (identity,)
                ).fetchone()
                if row is None:
                    raise UnknownIdentityError(f"no identity {identity!r} in the gallery")
                (count,) = self._db.execute(
                    "SELECT COUNT(*) FROM images WHERE identity_id = ?", row
                ).fetchone()
                self._db.execute("DELETE FROM images WHERE identity_id = ?", row)
                self._db.execute("DELETE FROM identities WHERE id = ?", row)
            self._names.pop(row[0], None)
            self._index.remove_identity(row[0])
        return int(count)

    # -- reads ---------------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int = 5) -> list[list[Match]]:
        """Per query row, the ``k`` nearest identities (nearest image's distance), nearest first."""
        if k < 1:
            raise DataError(f"top_k must be at least 1; got {k}")
        queries = self._check_vectors(queries)
        with self._lock:
            self._sync()
            found = self._index.nearest_identities(queries, k)
            return [
                [Match(self._names[m.identity_id], m.image_id, m.distance) for m in row]
                for row in found
            ]

    def identities(self) -> list[IdentityInfo]:
        """Every identity with its number of images, by name."""
        with self._lock:
            rows = self._db.execute(
                "SELECT identities.name, COUNT(images.id), MIN(images.id) FROM identities "
                "LEFT JOIN images ON images.identity_id = identities.id "
                "GROUP BY identities.id ORDER BY identities.name"
            ).fetchall()
        return [IdentityInfo(name, int(count), first) for name, count, first in rows]

    def thumbnail(self, image_id: int) -> bytes | None:
        """The PNG thumbnail of an image (None if the image is unknown or has none)."""
        with self._lock:
            row = self._db.execute(
                "SELECT thumbnail FROM images WHERE id = ?", (int(image_id),)
            ).fetchone()
        return None if row is None else row[0]

    def counts(self) -> dict[str, int]:
        """``{"identities": …, "images": …}`` as the index sees them (after a sync)."""
        with self._lock:
            self._sync()
            return {"identities": len(self._names), "images": len(self._index)}

    def close(self) -> None:
        """Close the connection (the data is already on disk)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> GalleryStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _check_vectors(self, embeddings: np.ndarray) -> np.ndarray:
        vectors = np.asarray(embeddings, dtype=np.float32)
        if vectors.ndim == 1:
            vectors = vectors[None]
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(vectors) == 0:
            raise DataError(
                f"expected embeddings of shape (n ≥ 1, {self.dim}); got {tuple(vectors.shape)}"
            )
        if not np.isfinite(vectors).all():
            raise DataError("embeddings hold NaN or infinite values")
        return vectors


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on any exception)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: Any, *rest: Any) -> None:
        self._db.execute("ROLLBACK" if kind is not None else "COMMIT")


class _ReadSnapshot(_Transaction):
    """``BEGIN`` (deferred): several SELECTs see one consistent snapshot of the file."""

    def __enter__(self) -> None:
        self._db.execute("BEGIN")


def _check_name(identity: Any) -> str:
    if not isinstance(identity, str):
        raise StoreError(f"an identity name must be a string; got {type(identity).__name__}")
    name = identity.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise StoreError(f"an identity name must have 1 to {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise StoreError("an identity name must not hold control characters")
    if "/" in name:
        raise StoreError("an identity name must not hold '/' (it is used in URLs)")
    return name
