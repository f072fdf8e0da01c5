"""The store's SQL schema, where its database file lives, and how a file is recognised as a store.

A store is recognised by its ``meta`` table holding ``app = 'resnorm'``. Anything else at the
path (a text file, a binary file, an SQLite database of another program) is refused with a
:class:`~resnorm.errors.ConfigError` *before* it is opened for writing, so it is never modified.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from resnorm.errors import ConfigError

#: The value of ``meta.app`` that marks a resnorm store.
APP_MARKER = "resnorm"
#: The schema version this code writes; a store with a higher one is refused.
SCHEMA_VERSION = 1
#: The database file name inside a lab folder.
DB_NAME = "resnorm.sqlite"
#: File suffixes that name a database file rather than a lab folder.
DB_SUFFIXES = frozenset({".sqlite", ".sqlite3", ".db"})

_SQLITE_HEADER = b"SQLite format 3\x00"

STATUS_CHECK = "status IN ('pending','running','done','diverged','stuck','failed','interrupted')"

#: Tables and indexes (idempotent). NULL-free uniqueness: ``layer`` -1 and ``key`` '' are the
#: "none" sentinels, metric/diagnostic NULL values mean NaN.
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id        TEXT PRIMARY KEY,
    name          TEXT,
    study         TEXT,
    config        TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending' CHECK ({STATUS_CHECK}),
    status_detail TEXT,
    created_at    REAL NOT NULL,
    started_at    REAL,
    finished_at   REAL,
    updated_at    REAL NOT NULL,
    environment   TEXT,
    summary       TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_study ON runs (study, status);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT    NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    step   INTEGER NOT NULL,
    name   TEXT    NOT NULL,
    value  REAL,
    PRIMARY KEY (run_id, name, step)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS metrics_by_step ON metrics (run_id, step);
CREATE TABLE IF NOT EXISTS diagnostics (
    run_id TEXT    NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    step   INTEGER NOT NULL,
    probe  TEXT    NOT NULL,
    layer  INTEGER NOT NULL DEFAULT -1,
    key    TEXT    NOT NULL DEFAULT '',
    value  REAL,
    unit   TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, probe, step, layer, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS diagnostics_by_step ON diagnostics (run_id, step);
CREATE TABLE IF NOT EXISTS events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id  TEXT    NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    step    INTEGER,
    time    REAL    NOT NULL,
    kind    TEXT    NOT NULL,
    message TEXT    NOT NULL,
    data    TEXT
);
CREATE INDEX IF NOT EXISTS events_by_run ON events (run_id, id);
"""


def resolve_db_path(path: str | Path) -> Path:
    """Where the database file of ``path`` is.

    A directory, or a path that does not exist and has no database suffix, is a lab folder and
    holds ``resnorm.sqlite``; a path ending in ``.sqlite``/``.sqlite3``/``.db``, or an existing
    file, is the database file itself.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        return p / DB_NAME
    if p.suffix.lower() in DB_SUFFIXES or p.exists():
        return p
    return p / DB_NAME


def _describe(data: bytes, size: int) -> str:
    """A short description of a non-SQLite file from its first bytes."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return f"a binary file ({size} bytes)"
    return f"a text file ({size} bytes)"


def check_tables(db: Path, tables: list[str], app: str | None, version: str | None) -> bool:
    """Decide from a database's tables and meta values whether it is a store.

    Args:
        db: The database file (for messages).
        tables: Names of the user tables it has.
        app: ``meta.app``, or ``None`` if absent.
        version: ``meta.schema_version``, or ``None`` if absent.

    Returns:
        ``True`` if it is a store of this schema version, ``False`` if it has no tables at all
        (an empty database, which may be initialised).

    Raises:
        ConfigError: If it has tables but is not a resnorm store, or a newer schema.
    """
    user_tables = sorted(t for t in tables if not t.startswith("sqlite_"))
    if not user_tables:
        return False
    if app != APP_MARKER:
        shown = ", ".join(user_tables[:8]) + (", ..." if len(user_tables) > 8 else "")
        raise ConfigError(
            "store",
            f"{db} is an SQLite database with tables [{shown}] but no resnorm marker "
            f"(meta.app = {APP_MARKER!r}); it is not a resnorm store, refusing to use it. "
            "Point the lab at an empty folder or an existing resnorm store.",
        )
    try:
        found = int(version or "0")
    except ValueError:
        found = -1
    if found > SCHEMA_VERSION:
        raise ConfigError(
            "store",
            f"{db} is a resnorm store of schema version {found}, newer than this resnorm "
            f"understands ({SCHEMA_VERSION}); upgrade resnorm to use it.",
        )
    if found < 1:
        raise ConfigError(
            "store", f"{db} has the resnorm marker but an invalid schema version {version!r}."
        )
    return True


def read_tables(conn: sqlite3.Connection) -> tuple[list[str], str | None, str | None]:
    """The user table names and the ``meta`` app marker and schema version of a connection."""
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    app = version = None
    if "meta" in tables:
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError:
            meta = {}
        app, version = meta.get("app"), meta.get("schema_version")
    return tables, (None if app is None else str(app)), version


def inspect_file(db: Path) -> bool:
    """Check, without modifying it, whether the file at ``db`` may be used as a store.

    Args:
        db: The database file path.

    Returns:
        ``True`` if it is an existing store; ``False`` if there is nothing there yet (no file,
        an empty file with a database suffix, or an SQLite database without tables).

    Raises:
        ConfigError: If the path holds something that is not a resnorm store.
        StoreError: If it is an SQLite file that cannot be read (damaged).
    """
    if not db.exists():
        return False
    if db.is_dir():
        raise ConfigError("store", f"{db} is a directory, expected a resnorm database file.")
    size = db.stat().st_size
    if size == 0:
        if db.suffix.lower() in DB_SUFFIXES:
            return False
        raise ConfigError("store", f"{db} is an empty file, not a resnorm store.")
    with db.open("rb") as f:
        head = f.read(512)
    if not head.startswith(_SQLITE_HEADER):
        raise ConfigError(
            "store",
            f"{db} is {_describe(head, size)}, not an SQLite database; it is not a resnorm "
            "store, refusing to use it.",
        )
    uri = db.resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=30.0)
        try:
            tables, app, version = read_tables(conn)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        from resnorm.store.integrity import StoreError

        raise StoreError(
            db, f"it starts like an SQLite database but cannot be read: {exc}"
        ) from exc
    return check_tables(db, tables, app, version)
