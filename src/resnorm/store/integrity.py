"""Whether a store's file is intact: open checks, the damage error, and ``doctor --lab``'s view.

A store is checked when it is opened, before anything writes to it: its tables must all be
there; ``PRAGMA quick_check`` must pass and every run's and event's text and JSON must decode.
That full check reads the whole file, so it runs only when the file changed since it was last
seen intact: its size and mtime when a store handle closes having found no damage (resnorm
trusts its own writes) are kept in a sidecar, ``resnorm.sqlite-checked``. Damage found later,
while reading (a malformed page, a row whose JSON or text does not decode), raises the same
:class:`StoreError`, and that handle writes nothing more.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

#: Tables every store of this schema has.
TABLES = ("meta", "runs", "metrics", "diagnostics", "events")
#: Suffix of the sidecar holding the file's size and mtime when it was last seen intact.
STAMP_SUFFIX = "-checked"

_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_CORRUPT_TEXT = ("malformed", "not a database", "no such table", "no such column", "decode")


class StoreError(RuntimeError):
    """The store's file is damaged (an environment failure: the CLI exits with status 1).

    Attributes:
        path: The database file.
        problem: What is wrong with it.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = " ".join(problem.split())  # one line, whatever SQLite said
        super().__init__(
            f"the store {self.path} is damaged ({self.problem}); nothing was written to it. "
            "Move it aside or restore it from a backup, then run again "
            f"(`resnorm doctor --lab {self.path.parent}` shows its state)."
        )


def is_damage(exc: BaseException) -> bool:
    """Whether an SQLite or decoding error means the file's content is damaged."""
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        return True
    if not isinstance(exc, sqlite3.DatabaseError) or isinstance(exc, sqlite3.IntegrityError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and (int(code) & 0xFF) in _CORRUPT_CODES:
        return True
    text = str(exc).lower()
    return any(t in text for t in _CORRUPT_TEXT)


def _stamp_path(db: Path) -> Path:
    return db.with_name(db.name + STAMP_SUFFIX)


def _file_stamp(db: Path) -> str:
    st = db.stat()
    return f"{st.st_size} {st.st_mtime_ns}"


def record_intact(db: Path) -> None:
    """Remember the file as intact as it is now (best effort: a read-only lab skips it; an
    unchanged stamp is not rewritten, so reading an unchanged store changes no file)."""
    with contextlib.suppress(OSError):
        stamp = _file_stamp(db)
        if not _seen_intact(db):
            _stamp_path(db).write_text(stamp)


def _seen_intact(db: Path) -> bool:
    try:
        return _stamp_path(db).read_text() == _file_stamp(db)
    except OSError:
        return False


def _problems(conn: sqlite3.Connection, full: bool) -> list[str]:
    """What is wrong with an open store (empty: nothing); ``full`` runs the page check."""
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = [t for t in TABLES if t not in names]
    if missing:
        return [f"missing table(s) {', '.join(missing)}"]
    if not full:
        return []
    rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check(5)")]
    if rows != ["ok"]:
        return rows
    bad = _undecodable(conn)
    return [bad] if bad else []


def check_store(db: Path, *, force: bool = False) -> None:
    """Raise :class:`StoreError` unless the existing store ``db`` is intact; writes nothing.

    The full check (pages, then every run's and event's text and JSON) runs only when the file
    changed since it was last seen intact; the caller stamps it (`record_intact`) once it has
    used the store without finding damage.

    Args:
        db: The database file of a store (its marker and schema version already checked).
        force: Run the page check even if the file is unchanged since last seen intact.
    """
    full = force or not _seen_intact(db)
    try:
        conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True, timeout=30.0)
        try:
            problems = _problems(conn, full)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        problems = [str(exc)]
    if problems:
        raise StoreError(db, "; ".join(problems)[:300])


def _undecodable(conn: sqlite3.Connection) -> str:
    """The first row whose text or JSON does not decode, described (empty: none); the page
    check does not look inside values, so the doctor reads every one."""
    queries = {
        "runs": "SELECT run_id, name, study, status, config, environment, summary FROM runs",
        "events": "SELECT id, kind, message, data FROM events",
    }
    json_columns = {"runs": (4, 5, 6), "events": (3,)}
    for table, sql in queries.items():
        conn.text_factory = bytes  # read raw, so one bad row is named instead of raising
        try:
            for row in conn.execute(sql):
                key = row[0].decode("utf-8", "replace") if isinstance(row[0], bytes) else row[0]
                for i, value in enumerate(row):
                    if not isinstance(value, bytes):
                        continue
                    try:
                        text = value.decode("utf-8")
                        if i in json_columns[table]:
                            json.loads(text)
                    except ValueError as exc:
                        return f"{table} row {key}: {type(exc).__name__}: {exc}"[:300]
        finally:
            conn.text_factory = str
    return ""


def store_health(lab: str | Path) -> dict[str, Any]:
    """The state of a lab's store, for ``resnorm doctor --lab``: never raises, writes nothing
    but the stamp.

    Returns:
        ``{"path", "state", "detail", "schema_version", "runs"}``, where ``state`` is ``ok``,
        ``missing``, ``not a store`` or ``damaged``.
    """
    from resnorm.errors import ConfigError
    from resnorm.store.schema import inspect_file, read_tables, resolve_db_path

    db = resolve_db_path(lab)
    out: dict[str, Any] = {
        "path": str(db),
        "state": "ok",
        "detail": "",
        "schema_version": None,
        "runs": None,
    }
    try:
        if not inspect_file(db):
            return {**out, "state": "missing", "detail": "no store here yet"}
        check_store(db, force=True)
        conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True, timeout=30.0)
        try:
            out["schema_version"] = read_tables(conn)[2]
            out["runs"] = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        finally:
            conn.close()
        record_intact(db)
    except StoreError as exc:
        out.update(state="damaged", detail=exc.problem)
    except ConfigError as exc:
        out.update(state="not a store", detail=str(exc))
    except (sqlite3.Error, OSError) as exc:
        out.update(state="damaged", detail=f"{type(exc).__name__}: {exc}")
    return out
