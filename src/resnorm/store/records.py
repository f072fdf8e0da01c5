"""Value types of the results store: run records, metric/diagnostic/event rows, the run identity.

Everything here is plain Python (no SQLite): the frozen dataclasses that the store returns, the
diagnostic record it accepts, the run statuses, and :func:`config_hash`, the identity of a run.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

#: Every status a run can have, in lifecycle order.
STATUSES: tuple[str, ...] = (
    "pending",
    "running",
    "done",
    "diverged",
    "stuck",
    "failed",
    "interrupted",
)

#: Statuses after which a run's process is over (``finished_at`` is set on entering them).
#: ``interrupted`` is terminal for the process but not for the run: a study re-run resumes it.
TERMINAL_STATUSES: frozenset[str] = frozenset(
    {"done", "diverged", "stuck", "failed", "interrupted"}
)

#: Statuses a study re-run does not run again.
COMPLETE_STATUSES: frozenset[str] = frozenset({"done", "diverged", "stuck"})


def _canonical(value: Any) -> Any:
    """Turn nested mappings/sequences into plain dicts/lists so JSON encoding is canonical."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def canonical_json(config: Mapping[str, Any]) -> str:
    """The canonical JSON text of a config: sorted keys, no whitespace, ASCII only.

    Args:
        config: A JSON-serializable mapping (nested mappings, lists, tuples, str, int, float,
            bool, None).

    Returns:
        The canonical encoding; equal configs give equal text whatever their key order.

    Raises:
        TypeError: If the config holds a value JSON cannot encode.
    """
    return json.dumps(_canonical(config), sort_keys=True, separators=(",", ":"))


def config_hash(config: Mapping[str, Any]) -> str:
    """The identity of a run: the first 16 hex digits of sha256 over the canonical config JSON.

    Key order does not matter; any value change does (note ``1`` and ``1.0`` differ, so hash the
    resolved config, whose field types are fixed).

    Args:
        config: The resolved config as a JSON-serializable mapping.

    Returns:
        A 16-character lowercase hex string.
    """
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()[:16]


def dumps(value: Any) -> str | None:
    """Encode a JSON column value (``None`` stays SQL NULL); NaN/inf are kept as JSON extensions."""
    if value is None:
        return None
    return json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"))


def loads(text: str | None) -> Any:
    """Decode a JSON column value (SQL NULL gives ``None``)."""
    return None if text is None else json.loads(text)


def to_sql_float(value: Any) -> float | None:
    """A metric value as stored: a float, with NaN stored as SQL NULL (SQLite has no NaN)."""
    number = float(value)
    return None if math.isnan(number) else number


def from_sql_float(value: float | None) -> float:
    """A stored metric value read back: SQL NULL means NaN."""
    return math.nan if value is None else float(value)


@dataclass(frozen=True)
class RunRecord:
    """One run as stored, with its JSON columns parsed.

    Attributes:
        run_id: The run's identity, normally ``config_hash(config)``.
        config: The resolved config the run was created with (never overwritten).
        name: A human label, or ``None``.
        study: The study the run belongs to, or ``None`` for a standalone run.
        status: One of :data:`STATUSES`.
        detail: Why the run is in its status (e.g. ``"non-finite loss at step 812"``), or ``None``.
        created_at: Unix time the run was first stored.
        started_at: Unix time of the latest transition to ``running``, or ``None``.
        finished_at: Unix time of the latest transition to a terminal status, or ``None``.
        updated_at: Unix time of the latest change to the run row.
        environment: Where it ran (torch version, device, git sha, ...), or ``None``.
        summary: Final metrics, or ``None``.
    """

    run_id: str
    config: dict[str, Any]
    name: str | None
    study: str | None
    status: str
    detail: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float
    environment: dict[str, Any] | None
    summary: dict[str, Any] | None

    @property
    def duration(self) -> float | None:
        """Seconds from the latest start to the latest finish, or ``None`` if either is unset."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def as_dict(self) -> dict[str, Any]:
        """The record as a plain dict (one row of ``load_results(kind="runs")``)."""
        return {
            "run_id": self.run_id,
            "name": self.name,
            "study": self.study,
            "status": self.status,
            "detail": self.detail,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "updated_at": self.updated_at,
            "config": self.config,
            "environment": self.environment,
            "summary": self.summary,
        }


class Metric(NamedTuple):
    """One scalar of one run at one step (NaN is a legal value)."""

    step: int
    name: str
    value: float


@dataclass(frozen=True)
class DiagnosticRecord:
    """A probe measurement to log: what :meth:`Store.log_diagnostics` accepts (besides mappings).

    Attributes:
        probe: The probe's registered name (e.g. ``"residual_rms"``).
        value: The measured number.
        layer: The layer index, or ``None`` for a model-wide value.
        key: The sublayer or other sub-key (e.g. ``"attn"``), or ``None``.
        unit: The unit (e.g. ``"rms"``, ``"nats"``), ``""`` if dimensionless.
    """

    probe: str
    value: float
    layer: int | None = None
    key: str | None = None
    unit: str = ""


@dataclass(frozen=True)
class Diagnostic:
    """One stored probe measurement of one run at one step.

    Attributes:
        step: The training step (the lab uses 0 for probes at init).
        probe: The probe's name.
        layer: The layer index, or ``None`` for a model-wide value.
        key: The sublayer or other sub-key, or ``None``.
        value: The measured number (NaN allowed).
        unit: The unit, ``""`` if dimensionless.
    """

    step: int
    probe: str
    layer: int | None
    key: str | None
    value: float
    unit: str


@dataclass(frozen=True)
class Event:
    """One entry of a run's event log (status changes, divergence, resume, warnings, ...).

    Attributes:
        id: Increasing id; events of a run sort by it in the order they were logged.
        run_id: The run.
        step: The training step it refers to, or ``None``.
        time: Unix time it was logged.
        kind: A short machine-readable kind (``"status"``, ``"resume"``, ``"diverged"``, ...).
        message: A human-readable line.
        data: Extra JSON data, or ``None``.
    """

    id: int
    run_id: str
    step: int | None
    time: float
    kind: str
    message: str
    data: Any


def diagnostic_fields(record: Any) -> tuple[str, int, str, float | None, str]:
    """Extract ``(probe, layer, key, value, unit)`` from a mapping or an object with attributes.

    ``layer`` ``None`` becomes the sentinel ``-1`` and ``key`` ``None`` becomes ``""`` so that
    the table's uniqueness constraint holds (SQL treats NULLs as distinct). ``sublayer`` is
    accepted as a synonym of ``key``.

    Raises:
        ValueError: If the record has no probe name or no value.
    """
    if isinstance(record, Mapping):
        fields: Mapping[str, Any] = record
    else:
        names: Sequence[str] = ("probe", "layer", "key", "sublayer", "value", "unit")
        fields = {n: getattr(record, n) for n in names if hasattr(record, n)}
    probe = fields.get("probe")
    if not probe:
        raise ValueError(f"diagnostic record without a probe name: {record!r}")
    if fields.get("value") is None:
        raise ValueError(f"diagnostic record without a value: {record!r}")
    layer = fields.get("layer")
    key = fields.get("key")
    if key is None:
        key = fields.get("sublayer")
    unit = fields.get("unit")
    return (
        str(probe),
        -1 if layer is None else int(layer),
        "" if key is None else str(key),
        to_sql_float(fields["value"]),
        "" if unit is None else str(unit),
    )
