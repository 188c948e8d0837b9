"""The study database: answer key, readers and answers in one SQLite file (WAL mode).

Every answer is one ``BEGIN IMMEDIATE ... COMMIT`` transaction with ``synchronous=FULL``, so an
answer the server acknowledged survives a reload, a crash or ``kill -9``. A second answer by the
same reader to the same image is refused (:class:`DuplicateAnswerError`): the first one stands.
The key (``images.truth``, ``images.set_name``, ``images.source``) never leaves this file.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from htd_core.errors import InputError

DB_NAME = "study.sqlite"
IMAGES_DIR = "images"
APP_ID = "htd-reader-study"
SCHEMA_VERSION = 1
CALLS = ("real", "synthetic")
IMAGE_ID_RE = re.compile(r"^[0-9a-f]{16}$")
READER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MAX_COMMENT = 2000

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sets (
    name TEXT PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('real', 'synthetic')),
    source TEXT NOT NULL, n INTEGER NOT NULL);
CREATE TABLE images (
    id TEXT PRIMARY KEY, position INTEGER NOT NULL UNIQUE,
    set_name TEXT NOT NULL REFERENCES sets(name),
    truth TEXT NOT NULL CHECK (truth IN ('real', 'synthetic')),
    source TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL);
CREATE TABLE readers (id TEXT PRIMARY KEY, seed INTEGER NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE answers (
    reader_id TEXT NOT NULL REFERENCES readers(id),
    image_id TEXT NOT NULL REFERENCES images(id),
    call TEXT NOT NULL CHECK (call IN ('real', 'synthetic')),
    quality INTEGER NOT NULL CHECK (quality BETWEEN 1 AND 5),
    comment TEXT NOT NULL DEFAULT '', elapsed_ms INTEGER, answered_at TEXT NOT NULL,
    PRIMARY KEY (reader_id, image_id));
"""


class UnknownReaderError(InputError):
    """An answer or request for a reader id that never started a session."""


class UnknownImageError(InputError):
    """An image id that is not part of the study."""


class DuplicateAnswerError(InputError):
    """The reader already answered this image; the first answer stands."""


def now() -> str:
    """The current UTC time as ISO 8601 text."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def connect(path: str | Path) -> sqlite3.Connection:
    """Open the database in autocommit mode with WAL, full fsync and foreign keys."""
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def init_db(path: str | Path, meta: dict[str, Any]) -> sqlite3.Connection:
    """Create a new study database at ``path`` with its schema and ``meta`` rows."""
    conn = connect(path)
    conn.executescript(SCHEMA)
    rows = {"app": APP_ID, "schema_version": str(SCHEMA_VERSION), "created_at": now(), **meta}
    conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in rows.items()])
    return conn


def is_study(folder: str | Path) -> bool:
    """Whether ``folder`` looks like an htd reader study (holds ``study.sqlite``)."""
    return (Path(folder) / DB_NAME).is_file()


def reader_seed(study_seed: int, reader_id: str) -> int:
    """The seed of one reader's image order: stable, different per reader."""
    digest = hashlib.sha256(f"{study_seed}:{reader_id}".encode()).hexdigest()
    return int(digest[:15], 16)


@dataclass(frozen=True)
class Progress:
    """Where a reader stands: answered count, total and the next image (None when done)."""

    reader_id: str
    answered: int
    total: int
    next_image: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "reader_id": self.reader_id,
            "answered": self.answered,
            "total": self.total,
            "next_image": self.next_image,
            "done": self.next_image is None,
        }


class StudyDB:
    """Access to one study folder; each call opens a short-lived connection (thread-safe).

    Args:
        root: the study folder (holding ``study.sqlite`` and ``images/``).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.path = self.root / DB_NAME
        self.images_dir = self.root / IMAGES_DIR
        meta = self.meta()
        self.seed = int(meta.get("seed", "0"))
        self.token = meta.get("token", "")

    @contextlib.contextmanager
    def conn(self) -> Iterator[sqlite3.Connection]:
        """A connection, closed on exit."""
        conn = connect(self.path)
        try:
            yield conn
        finally:
            conn.close()

    def meta(self) -> dict[str, str]:
        """The ``meta`` table as a dict."""
        with self.conn() as c:
            return {r["key"]: r["value"] for r in c.execute("SELECT key, value FROM meta")}

    def image_ids(self) -> list[str]:
        """All image ids in study order."""
        with self.conn() as c:
            return [r[0] for r in c.execute("SELECT id FROM images ORDER BY position")]

    def image_path(self, image_id: str) -> Path:
        """The file of a study image; :class:`UnknownImageError` if the id is not in the study."""
        if not isinstance(image_id, str) or not IMAGE_ID_RE.match(image_id):
            raise UnknownImageError(f"image id {image_id!r} is not in this study")
        with self.conn() as c:
            row = c.execute("SELECT id FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise UnknownImageError(f"image id {image_id!r} is not in this study")
        path = (self.images_dir / f"{row['id']}.png").resolve()
        if path.parent != self.images_dir.resolve() or not path.is_file():
            raise UnknownImageError(f"image id {image_id!r} has no file in this study")
        return path

    def start_reader(self, reader_id: str) -> Progress:
        """Register ``reader_id`` if new (idempotent) and return where they stand."""
        if not isinstance(reader_id, str) or not READER_ID_RE.match(reader_id):
            raise InputError(
                f"reader id {reader_id!r} is invalid: use 1-64 letters, digits or . _ @ - "
                "(no spaces), starting with a letter or digit"
            )
        with self.conn() as c:
            c.execute(
                "INSERT OR IGNORE INTO readers VALUES (?, ?, ?)",
                (reader_id, reader_seed(self.seed, reader_id), now()),
            )
        return self.progress(reader_id)

    def order(self, reader_id: str) -> list[str]:
        """The reader's own seeded image order; :class:`UnknownReaderError` if not registered."""
        with self.conn() as c:
            row = c.execute("SELECT seed FROM readers WHERE id = ?", (reader_id,)).fetchone()
            if row is None:
                raise UnknownReaderError(
                    f"reader {reader_id!r} has no session in this study: start one first"
                )
            ids = [r[0] for r in c.execute("SELECT id FROM images ORDER BY position")]
        random.Random(row["seed"]).shuffle(ids)
        return ids

    def progress(self, reader_id: str) -> Progress:
        """Answered count and the next unanswered image in the reader's order."""
        order = self.order(reader_id)
        with self.conn() as c:
            done = {
                r[0]
                for r in c.execute("SELECT image_id FROM answers WHERE reader_id = ?", (reader_id,))
            }
        nxt = next((i for i in order if i not in done), None)
        return Progress(reader_id, len(done), len(order), nxt)

    def record_answer(
        self,
        reader_id: str,
        image_id: str,
        call: str,
        quality: int,
        comment: str = "",
        elapsed_ms: int | None = None,
    ) -> Progress:
        """Store one answer in its own committed transaction; return the reader's progress.

        Raises:
            UnknownReaderError: the reader has no session.
            UnknownImageError: the image is not in the study.
            DuplicateAnswerError: the reader already answered this image (first answer stands).
            InputError: ``call``, ``quality`` or ``comment`` is invalid.
        """
        if call not in CALLS:
            raise InputError(f"call {call!r} is invalid: answer 'real' or 'synthetic'")
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 5:
            raise InputError(f"quality {quality!r} is invalid: give an integer from 1 to 5")
        comment = "" if comment is None else comment
        if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
            raise InputError(f"comment is invalid: text of at most {MAX_COMMENT} characters")
        if elapsed_ms is not None and (not isinstance(elapsed_ms, int) or elapsed_ms < 0):
            elapsed_ms = None
        self.order(reader_id)  # raises UnknownReaderError
        self.image_path(image_id)  # raises UnknownImageError
        with self.conn() as c:
            try:
                c.execute("BEGIN IMMEDIATE")
                c.execute(
                    "INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (reader_id, image_id, call, quality, comment, elapsed_ms, now()),
                )
                c.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                c.execute("ROLLBACK")
                raise DuplicateAnswerError(
                    f"reader {reader_id!r} already answered image {image_id}; "
                    "the first answer stands"
                ) from exc
        return self.progress(reader_id)

    def answers(self) -> list[dict[str, Any]]:
        """Every answer joined with its key (for the report only)."""
        sql = (
            "SELECT a.reader_id, a.image_id, a.call, a.quality, a.comment, a.elapsed_ms, "
            "a.answered_at, i.truth, i.set_name FROM answers a JOIN images i ON i.id = a.image_id "
            "ORDER BY a.reader_id, i.position"
        )
        with self.conn() as c:
            return [dict(r) for r in c.execute(sql)]

    def images(self) -> list[dict[str, Any]]:
        """Every image id with its set and truth, in study order (for the report only)."""
        sql = "SELECT id AS image_id, set_name, truth FROM images ORDER BY position"
        with self.conn() as c:
            return [dict(r) for r in c.execute(sql)]

    def sets(self) -> list[dict[str, Any]]:
        """The image sets (``real`` first) with kind, source folder and count."""
        with self.conn() as c:
            rows = c.execute("SELECT name, kind, source, n FROM sets ORDER BY kind, name")
            return [dict(r) for r in rows]


def open_study(root: str | Path) -> StudyDB:
    """Open an existing study, checking it is one and that its schema version is known.

    Raises:
        InputError: not a study folder, or a schema version this htd cannot read.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"study folder {root} does not exist: run htd reader-study create first")
    if not is_study(root):
        raise InputError(
            f"{root} is not an htd reader study (no {DB_NAME}): "
            "give the --out folder of htd reader-study create"
        )
    try:
        with contextlib.closing(sqlite3.connect(f"file:{root / DB_NAME}?mode=ro", uri=True)) as c:
            meta = dict(c.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{root / DB_NAME} is not a readable study database ({exc})") from exc
    if meta.get("app") != APP_ID:
        raise InputError(f"{root / DB_NAME} was not written by htd reader-study: give a study")
    version = meta.get("schema_version")
    if version != str(SCHEMA_VERSION):
        raise InputError(
            f"{root} has study schema version {version}, this htd reads version "
            f"{SCHEMA_VERSION}: open it with the htd version that created it"
        )
    return StudyDB(root)
