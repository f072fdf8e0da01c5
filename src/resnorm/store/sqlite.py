"""The SQLite results store: one database per lab folder, safe for several writing processes.

Tables: ``runs`` (identity = config hash, config, status, timestamps, environment, summary),
``metrics`` (run, step, name, value), ``diagnostics`` (run, step, probe, layer, key, value, unit),
``events`` (an append-only log per run) and ``meta`` (the marker and schema version). Every
public write is one transaction (a batch is all-or-nothing), retried while another process holds
the lock (see :mod:`resnorm.store.connection`). Metrics and diagnostics are upserted on their
natural key, so a resumed run that re-logs a step never duplicates a row.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Mapping
from typing import Any

from resnorm.errors import choice_error
from resnorm.store.connection import Database
from resnorm.store.records import (
    STATUSES,
    TERMINAL_STATUSES,
    Diagnostic,
    Event,
    Metric,
    RunRecord,
    diagnostic_fields,
    dumps,
    from_sql_float,
    loads,
    to_sql_float,
)

_RUN_COLUMNS = (
    "run_id, config, name, study, status, status_detail, created_at, started_at, finished_at, "
    "updated_at, environment, summary"
)


def _run_from_row(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord(
        run_id=row[0],
        config=loads(row[1]),
        name=row[2],
        study=row[3],
        status=row[4],
        detail=row[5],
        created_at=row[6],
        started_at=row[7],
        finished_at=row[8],
        updated_at=row[9],
        environment=loads(row[10]),
        summary=loads(row[11]),
    )


def _check_status(status: str) -> str:
    if status not in STATUSES:
        raise choice_error("status", status, STATUSES)
    return status


class Store(Database):
    """The results store of one lab folder.

    Example:
        >>> with Store(tmp_path) as store:  # doctest: +SKIP
        ...     store.upsert_run(config_hash(cfg), cfg, study="depth")
        ...     store.log_metrics(run_id, 10, {"loss": 2.3, "lr": 1e-3})

    A ``Store`` may be shared between threads of one process (calls are serialised); after a
    ``fork`` the child transparently opens its own connection. It pickles as ``(path, readonly)``
    so it can be handed to worker processes, which reopen it.

    Attributes:
        path: The database file.
        folder: The folder holding it (checkpoints and artifacts live beside it).
        readonly: Whether writes are refused.
    """

    # -- runs ------------------------------------------------------------------------------

    def upsert_run(
        self,
        run_id: str,
        config: Mapping[str, Any],
        *,
        name: str | None = None,
        study: str | None = None,
        environment: Mapping[str, Any] | None = None,
    ) -> bool:
        """Store a run as ``pending`` if it is new; never overwrite an existing run's config.

        For an existing run, a missing ``name``/``study`` is filled in and a given
        ``environment`` replaces the stored one (the latest process to touch the run).

        Args:
            run_id: The run's identity, normally ``config_hash(config)``.
            config: The resolved config (JSON-serializable).
            name: A human label.
            study: The study the run belongs to.
            environment: Where it runs (torch version, device, git sha, ...).

        Returns:
            ``True`` if the run was created, ``False`` if it already existed.
        """
        config_json = dumps(config)
        env_json = dumps(environment)

        def write(conn: sqlite3.Connection) -> bool:
            now = time.time()
            cur = conn.execute(
                "INSERT OR IGNORE INTO runs (run_id, name, study, config, status, created_at,"
                " updated_at, environment) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?)",
                (run_id, name, study, config_json, now, now, env_json),
            )
            if cur.rowcount == 1:
                return True
            conn.execute(
                "UPDATE runs SET name = COALESCE(name, ?), study = COALESCE(study, ?),"
                " environment = COALESCE(?, environment), updated_at = ? WHERE run_id = ?",
                (name, study, env_json, now, run_id),
            )
            return False

        return self._write(write)

    def set_status(
        self,
        run_id: str,
        status: str,
        detail: str | None = None,
        summary: Mapping[str, Any] | None = None,
        *,
        step: int | None = None,
    ) -> None:
        """Move a run to ``status`` and log the transition as a ``"status"`` event.

        ``running`` sets ``started_at`` to now and clears ``finished_at``; a terminal status
        (``done``, ``diverged``, ``stuck``, ``failed``, ``interrupted``) sets ``finished_at``;
        ``pending`` clears both.

        Args:
            run_id: The run.
            status: One of :data:`~resnorm.store.records.STATUSES`.
            detail: Why (e.g. ``"non-finite loss at step 812"``); replaces the previous detail.
            summary: Final metrics; replaces the stored summary when given, else it is kept.
            step: The step the transition happened at, recorded on the event.

        Raises:
            ConfigError: If ``status`` is not a valid status.
            KeyError: If the run is not in the store.
        """
        _check_status(status)
        summary_json = dumps(summary)

        def write(conn: sqlite3.Connection) -> None:
            now = time.time()
            times: tuple[Any, ...]
            if status == "running":
                sets, times = "started_at = ?, finished_at = NULL", (now,)
            elif status in TERMINAL_STATUSES:
                sets, times = "finished_at = ?", (now,)
            else:
                sets, times = "started_at = NULL, finished_at = NULL", ()
            cur = conn.execute(
                "UPDATE runs SET status = ?, status_detail = ?, summary = COALESCE(?, summary),"
                f" updated_at = ?, {sets} WHERE run_id = ?",
                (status, detail, summary_json, now, *times, run_id),
            )
            if cur.rowcount != 1:
                raise KeyError(f"no run {run_id!r} in the store {self.path}")
            message = status if detail is None else f"{status}: {detail}"
            conn.execute(
                "INSERT INTO events (run_id, step, time, kind, message, data)"
                " VALUES (?, ?, ?, 'status', ?, ?)",
                (run_id, step, now, message, dumps({"status": status})),
            )

        self._write(write)

    def get_run(self, run_id: str) -> RunRecord | None:
        """The run with this id, or ``None``."""

        def read(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            return None if row is None else _run_from_row(row)

        return self._read(read)

    def runs(
        self, study: str | None = None, status: str | Iterable[str] | None = None
    ) -> list[RunRecord]:
        """Runs in creation order, optionally only those of one study and/or status(es).

        Args:
            study: Keep only runs of this study.
            status: Keep only runs with this status, or any of these statuses.
        """
        where, params = self._run_filter(study, status)

        def read(conn: sqlite3.Connection) -> list[RunRecord]:
            rows = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs{where} ORDER BY created_at, run_id", params
            ).fetchall()
            return [_run_from_row(r) for r in rows]

        return self._read(read)

    @staticmethod
    def _run_filter(study: str | None, status: str | Iterable[str] | None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if study is not None:
            clauses.append("study = ?")
            params.append(study)
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            for s in wanted:
                _check_status(s)
            clauses.append(f"status IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def status_counts(self, study: str | None = None) -> dict[str, int]:
        """How many runs have each status (every status present, zeros included)."""
        where, params = self._run_filter(study, None)

        def read(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(
                f"SELECT status, COUNT(*) FROM runs{where} GROUP BY status", params
            ).fetchall()
            counts = dict.fromkeys(STATUSES, 0)
            counts.update({s: int(n) for s, n in rows})
            return counts

        return self._read(read)

    # -- metrics ---------------------------------------------------------------------------

    def log_metrics(self, run_id: str, step: int, values: Mapping[str, Any]) -> None:
        """Store scalars of one step; re-logging a ``(step, name)`` replaces the value.

        Args:
            run_id: The run (must exist).
            step: The training step.
            values: ``{name: value}``; values are converted with ``float`` (NaN allowed).

        Raises:
            KeyError: If the run is not in the store.
        """
        self.log_metrics_many(run_id, [(step, n, v) for n, v in values.items()])

    def log_metrics_many(self, run_id: str, rows: Iterable[tuple[int, str, Any]]) -> None:
        """Store many ``(step, name, value)`` rows in one transaction (all or none).

        Raises:
            KeyError: If the run is not in the store.
        """
        data = [(run_id, int(step), str(name), to_sql_float(v)) for step, name, v in rows]
        if not data:
            return
        self._write(
            lambda conn: conn.executemany(
                "INSERT OR REPLACE INTO metrics (run_id, step, name, value) VALUES (?, ?, ?, ?)",
                data,
            )
        )

    def metrics(self, run_id: str, name: str | None = None) -> list[Metric]:
        """A run's metrics ordered by step then name, optionally only one metric name."""
        sql = "SELECT step, name, value FROM metrics WHERE run_id = ?"
        params: tuple[Any, ...] = (run_id,)
        if name is not None:
            sql += " AND name = ?"
            params += (name,)

        def read(conn: sqlite3.Connection) -> list[Metric]:
            rows = conn.execute(sql + " ORDER BY step, name", params).fetchall()
            return [Metric(s, n, from_sql_float(v)) for s, n, v in rows]

        return self._read(read)

    def delete_metrics_after(
        self, run_id: str, step: int, *, include_diagnostics: bool = True
    ) -> int:
        """Drop a run's metrics (and diagnostics) logged at steps after ``step``.

        Used when a run resumes from a checkpoint at ``step``: what the killed process logged
        later is dropped, then re-logged deterministically. Events are history and are kept.

        Args:
            run_id: The run.
            step: The checkpoint step; rows at ``step`` itself are kept.
            include_diagnostics: Also drop diagnostics after ``step``.

        Returns:
            The number of rows deleted.
        """

        def write(conn: sqlite3.Connection) -> int:
            n = conn.execute(
                "DELETE FROM metrics WHERE run_id = ? AND step > ?", (run_id, int(step))
            ).rowcount
            if include_diagnostics:
                n += conn.execute(
                    "DELETE FROM diagnostics WHERE run_id = ? AND step > ?", (run_id, int(step))
                ).rowcount
            return int(n)

        return self._write(write)

    # -- diagnostics -----------------------------------------------------------------------

    def log_diagnostics(self, run_id: str, step: int, records: Iterable[Any]) -> None:
        """Store probe measurements of one step in one transaction; re-logging replaces.

        Args:
            run_id: The run (must exist).
            step: The step (0 for probes at init).
            records: Mappings or objects (e.g. :class:`DiagnosticRecord`) with ``probe``,
                ``value`` and optional ``layer``, ``key`` (or ``sublayer``) and ``unit``.

        Raises:
            KeyError: If the run is not in the store.
            ValueError: If a record lacks a probe name or a value.
        """
        data = [(run_id, int(step), *diagnostic_fields(r)) for r in records]
        if not data:
            return
        self._write(
            lambda conn: conn.executemany(
                "INSERT OR REPLACE INTO diagnostics (run_id, step, probe, layer, key, value, unit)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                data,
            )
        )

    def diagnostics(self, run_id: str, probe: str | None = None) -> list[Diagnostic]:
        """A run's probe measurements ordered by step, probe, layer, key."""
        sql = "SELECT step, probe, layer, key, value, unit FROM diagnostics WHERE run_id = ?"
        params: tuple[Any, ...] = (run_id,)
        if probe is not None:
            sql += " AND probe = ?"
            params += (probe,)

        def read(conn: sqlite3.Connection) -> list[Diagnostic]:
            rows = conn.execute(sql + " ORDER BY step, probe, layer, key", params).fetchall()
            return [
                Diagnostic(s, p, None if la < 0 else la, k or None, from_sql_float(v), u)
                for s, p, la, k, v, u in rows
            ]

        return self._read(read)

    # -- events ----------------------------------------------------------------------------

    def log_event(
        self,
        run_id: str,
        kind: str,
        message: str,
        step: int | None = None,
        data: Any = None,
    ) -> int:
        """Append an event to a run's log.

        Args:
            run_id: The run (must exist).
            kind: A short machine-readable kind (``"resume"``, ``"diverged"``, ``"warning"``).
            message: A human-readable line.
            step: The training step it refers to.
            data: Extra JSON-serializable data.

        Returns:
            The event's id.

        Raises:
            KeyError: If the run is not in the store.
        """
        data_json = dumps(data)
        step_value = None if step is None else int(step)

        def write(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "INSERT INTO events (run_id, step, time, kind, message, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, step_value, time.time(), kind, message, data_json),
            )
            return int(cur.lastrowid or 0)

        return self._write(write)

    def events(self, run_id: str, kind: str | None = None) -> list[Event]:
        """A run's events in the order they were logged, optionally only one kind."""
        sql = "SELECT id, run_id, step, time, kind, message, data FROM events WHERE run_id = ?"
        params: tuple[Any, ...] = (run_id,)
        if kind is not None:
            sql += " AND kind = ?"
            params += (kind,)

        def read(conn: sqlite3.Connection) -> list[Event]:
            rows = conn.execute(sql + " ORDER BY id", params).fetchall()
            return [Event(i, r, s, t, k, m, loads(d)) for i, r, s, t, k, m, d in rows]

        return self._read(read)
