"""Bulk reads for reports: whole tables as row dicts, with each run's name and study joined in."""

from __future__ import annotations

import sqlite3
from typing import Any

from resnorm.errors import choice_error
from resnorm.store.records import from_sql_float, loads
from resnorm.store.sqlite import _RUN_COLUMNS, Store, _run_from_row

#: The kinds of rows :func:`query_records` reads: table -> (its columns, the row order).
RECORD_KINDS: dict[str, tuple[str, str]] = {
    "runs": (_RUN_COLUMNS, "created_at, run_id"),
    "metrics": ("t.step, t.name, t.value", "r.created_at, t.run_id, t.step, t.name"),
    "diagnostics": (
        "t.step, t.probe, t.layer, t.key, t.value, t.unit",
        "r.created_at, t.run_id, t.step, t.probe, t.layer, t.key",
    ),
    "events": ("t.id, t.step, t.time, t.kind, t.message, t.data", "t.id"),
}


def query_records(
    store: Store, kind: str = "runs", *, study: str | None = None, run_id: str | None = None
) -> list[dict[str, Any]]:
    """All rows of one table as dicts, read in one snapshot.

    Args:
        store: An open store (read-only is enough).
        kind: ``"runs"``, ``"metrics"``, ``"diagnostics"`` or ``"events"``.
        study: Keep only rows of runs of this study.
        run_id: Keep only rows of this run.

    Returns:
        For ``runs``, :meth:`RunRecord.as_dict` rows (JSON columns parsed). Otherwise the table's
        columns (``layer``/``key`` ``None`` where unset, NaN for non-finite values, ``data``
        parsed) preceded by ``run_id``, ``run_name`` and ``study`` of the run.

    Raises:
        ConfigError: If ``kind`` is not one of the four.
    """
    if kind not in RECORD_KINDS:
        raise choice_error("kind", kind, RECORD_KINDS)
    columns, order = RECORD_KINDS[kind]
    clauses: list[str] = []
    args: list[Any] = []
    if study is not None:
        clauses.append("r.study = ?")
        args.append(study)
    if run_id is not None:
        clauses.append("r.run_id = ?")
        args.append(run_id)
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    if kind == "runs":
        sql = f"SELECT {columns} FROM runs AS r{where} ORDER BY {order}"
    else:
        sql = (
            f"SELECT t.run_id, r.name AS run_name, r.study, {columns} FROM {kind} AS t"
            f" JOIN runs AS r ON r.run_id = t.run_id{where} ORDER BY {order}"
        )

    def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
        cur = conn.execute(sql, args)
        if kind == "runs":
            return [_run_from_row(row).as_dict() for row in cur]
        names = [d[0] for d in cur.description]
        out = []
        for row in cur:
            rec = dict(zip(names, row, strict=True))
            if "value" in rec:
                rec["value"] = from_sql_float(rec["value"])
            if kind == "diagnostics":
                rec["layer"] = None if rec["layer"] < 0 else rec["layer"]
                rec["key"] = rec["key"] or None
            elif kind == "events":
                rec["data"] = loads(rec["data"])
            out.append(rec)
        return out

    return store._read(read)
