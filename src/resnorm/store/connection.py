"""The database connection under the store: opening, creating, WAL, and retried transactions.

:class:`Database` resolves a lab folder to its database file, refuses files that are not resnorm
stores (before opening them for writing), creates the schema atomically (several processes may
race to create the same store), and runs every write as one ``BEGIN IMMEDIATE`` transaction that
is retried with jittered backoff while another process holds the lock.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from resnorm.errors import ConfigError
from resnorm.store.integrity import StoreError, check_store, is_damage, record_intact
from resnorm.store.schema import (
    APP_MARKER,
    SCHEMA,
    SCHEMA_VERSION,
    check_tables,
    inspect_file,
    read_tables,
    resolve_db_path,
)

T = TypeVar("T")
D = TypeVar("D", bound="Database")

_BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED (primary result codes)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether an error means another connection holds a lock (worth retrying)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (int(code) & 0xFF) in _BUSY_CODES
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class Database:
    """One SQLite connection to a resnorm store, with WAL, busy timeout and foreign keys on.

    Safe to share between threads of one process (calls are serialised by a lock); after a
    ``fork`` the child transparently opens its own connection; pickles as its path and mode so
    worker processes reopen it.

    Attributes:
        path: The database file.
        folder: The folder holding it (checkpoints and artifacts live beside it).
        readonly: Whether writes are refused.
        busy_timeout: Seconds a statement waits for another process's lock.
    """

    def __init__(
        self, path: str | Path, *, readonly: bool = False, busy_timeout: float = 30.0
    ) -> None:
        """Open the store at ``path``, creating it if nothing is there yet (unless read-only).

        Args:
            path: A lab folder (the database is ``<folder>/resnorm.sqlite``) or a database file
                path ending in ``.sqlite``/``.db``. Missing folders are created.
            readonly: Open with ``mode=ro`` (for reports); the store must already exist.
            busy_timeout: Seconds a write waits for another process's lock before failing.

        Raises:
            ConfigError: (field ``"store"``) if the path holds something that is not a resnorm
                store, which is then left untouched; or, read-only, if there is no store.
            StoreError: If the store is damaged (see :mod:`resnorm.store.integrity`).
        """
        self.path: Path = resolve_db_path(path)
        self.folder: Path = self.path.parent
        self.readonly: bool = readonly
        self.busy_timeout: float = float(busy_timeout)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        exists = inspect_file(self.path)
        self._damaged = False
        if exists:
            check_store(self.path)  # before any connection that could write
        if readonly:
            if not exists:
                raise ConfigError("store", f"no resnorm store at {self.path}.")
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
        conn = self._connect()
        if readonly:
            return
        try:
            if not exists:
                self._initialise()
            # Persistent once set; repeated on every open in case a creator died before it.
            self._retry(lambda c: c.execute("PRAGMA journal_mode = WAL").fetchone())
        except BaseException:
            conn.close()
            self._conn = None
            raise

    @classmethod
    def open(cls: type[D], path: str | Path, *, readonly: bool = False) -> D:
        """Open (or create) the store at ``path``; same as the constructor."""
        return cls(path, readonly=readonly)

    # -- connection management -------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            target, uri = self.path.resolve().as_uri() + "?mode=ro", True
        else:
            target, uri = str(self.path), False
        conn = sqlite3.connect(
            target,
            uri=uri,
            timeout=self.busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        if not self.readonly:
            conn.execute("PRAGMA synchronous = NORMAL")
        self._conn = conn
        self._pid = os.getpid()
        return conn

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"the store at {self.path} is closed.")
        if self._pid != os.getpid():  # forked: never reuse the parent's connection
            self._connect()
            assert self._conn is not None
        return self._conn

    def _initialise(self) -> None:
        """Create the schema and the marker in one transaction (a no-op if a racer did it)."""

        def create(conn: sqlite3.Connection) -> None:
            # Re-check under the write lock: another process may have created it meanwhile, or
            # (unlikely) something else may have written a foreign schema.
            if check_tables(self.path, *read_tables(conn)):
                return
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.executemany(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                [
                    ("app", APP_MARKER),
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("created_at", repr(time.time())),
                ],
            )

        self._write(create)

    def close(self) -> None:
        """Close the connection (idempotent); further calls raise ``RuntimeError``."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
                # Its own writes are trusted: the next open skips the page check.
                if not self._damaged and self.path.exists():
                    record_intact(self.path)
            self._conn = None

    def __enter__(self: D) -> D:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reopen, (type(self), str(self.path), self.readonly, self.busy_timeout))

    def __repr__(self) -> str:
        mode = ", readonly" if self.readonly else ""
        return f"{type(self).__name__}({str(self.path)!r}{mode})"

    # -- transactions ----------------------------------------------------------------------

    def _retry(self, fn: Callable[[sqlite3.Connection], T], *, begin: str | None = None) -> T:
        """Run ``fn`` (in a transaction opened with ``begin``), retrying while the db is busy."""
        with self._lock:
            conn = self._connection()
            deadline = time.monotonic() + self.busy_timeout
            delay = 0.005
            while True:
                try:
                    if begin is not None:
                        conn.execute(begin)
                    try:
                        result = fn(conn)
                        if conn.in_transaction:
                            conn.execute("COMMIT")
                    except BaseException:
                        if conn.in_transaction:
                            conn.rollback()
                        raise
                    return result
                except (sqlite3.DatabaseError, json.JSONDecodeError, UnicodeDecodeError) as exc:
                    if is_damage(exc):
                        self._damaged = True  # never written to again through this handle
                        raise StoreError(self.path, str(exc)[:300]) from exc
                    busy = isinstance(exc, sqlite3.OperationalError) and _is_busy(exc)
                    if not busy or time.monotonic() > deadline:
                        raise
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.25)

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` as one atomic write transaction."""
        if self.readonly:
            raise ConfigError("store", f"the store at {self.path} was opened read-only.")
        if self._damaged:
            raise StoreError(self.path, "damage was found while reading it")
        try:
            return self._retry(fn, begin="BEGIN IMMEDIATE")
        except sqlite3.IntegrityError as exc:
            if "FOREIGN KEY" in str(exc).upper():
                raise KeyError(f"unknown run (not in the store {self.path}): {exc}") from exc
            raise

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one read transaction (a consistent snapshot)."""
        return self._retry(fn, begin="BEGIN")


def _reopen(cls: type[D], path: str, readonly: bool, busy_timeout: float) -> D:
    """Unpickle a store by reopening its database."""
    return cls(path, readonly=readonly, busy_timeout=busy_timeout)
