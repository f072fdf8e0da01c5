"""The SQLite results store: runs, metrics, diagnostics and events of one lab folder.

``Store(folder)`` opens (or creates) ``<folder>/resnorm.sqlite``; :func:`config_hash` gives a
run's identity; :func:`load_results` reads a whole table for reports, as a pandas DataFrame when
pandas is installed and as a list of dicts otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnorm.errors import ConfigError
from resnorm.store.records import (
    COMPLETE_STATUSES,
    STATUSES,
    TERMINAL_STATUSES,
    Diagnostic,
    DiagnosticRecord,
    Event,
    Metric,
    RunRecord,
    canonical_json,
    config_hash,
)
from resnorm.store.results import RECORD_KINDS, query_records
from resnorm.store.schema import DB_NAME, SCHEMA_VERSION
from resnorm.store.sqlite import Store

__all__ = [
    "COMPLETE_STATUSES",
    "DB_NAME",
    "RECORD_KINDS",
    "SCHEMA_VERSION",
    "STATUSES",
    "TERMINAL_STATUSES",
    "Diagnostic",
    "DiagnosticRecord",
    "Event",
    "Metric",
    "RunRecord",
    "Store",
    "canonical_json",
    "config_hash",
    "load_results",
    "query_records",
]


def _pandas() -> Any:
    """The pandas module, or ``None`` when it is not installed."""
    try:
        import pandas
    except ImportError:
        return None
    return pandas


def load_results(
    path: str | Path | Store,
    *,
    study: str | None = None,
    kind: str = "runs",
    run_id: str | None = None,
    as_frame: bool | None = None,
) -> Any:
    """Read one table of a store for analysis (the store is opened read-only).

    Args:
        path: A lab folder, a database file, or an open :class:`Store`.
        study: Keep only rows of runs of this study.
        kind: ``"runs"``, ``"metrics"``, ``"diagnostics"`` or ``"events"``. Metrics,
            diagnostics and events carry the run's ``run_name`` and ``study`` columns.
        run_id: Keep only rows of this run.
        as_frame: ``True`` for a pandas DataFrame, ``False`` for a list of dicts, ``None``
            (default) for a DataFrame when pandas is installed and a list otherwise.

    Returns:
        A ``pandas.DataFrame`` or a ``list[dict[str, Any]]`` (see ``as_frame``). In ``runs``,
        ``config``/``environment``/``summary`` are dicts (``pandas.json_normalize`` flattens
        them).

    Raises:
        ConfigError: If there is no resnorm store at ``path``, ``kind`` is unknown, or
            ``as_frame=True`` and pandas (the ``report`` extra) is not installed.
    """
    pd = _pandas() if as_frame is not False else None
    if as_frame and pd is None:
        raise ConfigError(
            "as_frame", "a DataFrame needs pandas, not installed: pip install 'resnorm[report]'"
        )
    if isinstance(path, Store):
        rows = query_records(path, kind, study=study, run_id=run_id)
    else:
        with Store(path, readonly=True) as store:
            rows = query_records(store, kind, study=study, run_id=run_id)
    if pd is None:
        return rows
    columns = _columns(kind)
    return pd.DataFrame.from_records(rows, columns=columns)


def _columns(kind: str) -> list[str]:
    """The column names of ``kind`` rows (so an empty result still has its columns)."""
    if kind == "runs":
        return list(RunRecord.__dataclass_fields__)  # same keys as RunRecord.as_dict()
    fields = [f.strip().removeprefix("t.") for f in RECORD_KINDS[kind][0].split(",")]
    return ["run_id", "run_name", "study", *fields]
