"""The typed grammar of a study: per-run scalars, study quantities, checks and figures.

Each element is a frozen dataclass, built from Python (a built-in study) or from a TOML table
(a user's study) by the same ``*_from`` functions, and validated when it is built: an unknown
key, probe reduction or figure kind is a ConfigError naming the field and the valid choices.
``to_dict()`` gives the JSON form the study manifest records (and ``*_from`` reads it back).

Scalars (one number per run, see `resnorm.lab.verdicts.run_scalars`):
  `ProbeScalar` (a diagnostic), `MetricScalar` (a logged metric), `ExprScalar` (arithmetic).
Quantities (numbers over runs): `Of` (a scalar over matching points), `Slope` (log-log or
  linear least squares), `Trend` (Spearman), `Expr` (arithmetic over other quantities).
`Check`: a criterion that must hold, with the paper's number beside it and an effect size.
`Figure`: one of the report's figure kinds (`resnorm.report.kinds.FIGURE_KINDS`).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from resnorm.errors import ConfigError, choice_error
from resnorm.lab import expr as ex
from resnorm.report.kinds import COMMON_KEYS, FIGURE_KINDS
from resnorm.typed import shown

AGGS = ("mean", "max", "min", "median", "count")
REDUCES = ("mean", "max", "min", "first", "last")


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(where, f"got {value!r}, expected a table")
    return value


def _keys(data: Mapping[str, Any], valid: Sequence[str], where: str) -> None:
    for key in data:
        if key not in valid:
            close = difflib.get_close_matches(str(key), list(valid), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{where}.{shown(key)}", f"unknown key.{hint} Valid keys: {', '.join(valid)}"
            )


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(where, f"got {value!r}, expected a string")
    return value


def _int(value: Any, where: str, lo: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(where, f"got {value!r}, expected an integer >= {lo}")
    return value


def _where(value: Any) -> dict[str, Any]:
    """A ``where`` clause: a table of config paths (or ``part``, ``label``, ``seed``) to a value
    or a list of values."""
    table = dict(_table(value, "where"))
    for key, want in table.items():
        if not isinstance(key, str) or not key:
            raise ConfigError("where", f"got the key {key!r}, expected a config path")
        if isinstance(want, Mapping):
            raise ConfigError(f"where.{key}", f"got {want!r}, expected a value or a list")
    return table


def _layer_or_step(value: Any, where: str, words: tuple[str, ...]) -> str | int:
    if isinstance(value, str) and value in words:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ConfigError(where, f"got {value!r}, expected one of {', '.join(words)} or an integer")


def _build(cls: type, data: Mapping[str, Any], where: str) -> Any:
    """``cls(**data)``; an unknown key or a bad value is a ConfigError under ``where``."""
    _keys(data, [f.name for f in fields(cls)], where)
    try:
        return cls(**data)
    except ConfigError as e:
        message = str(e)[len(e.field) + 2 :]
        raise ConfigError(f"{where}.{e.field}", message) from None
    except TypeError as e:
        raise ConfigError(where, str(e)) from None


def _plain(obj: Any) -> dict[str, Any]:
    """The JSON form of a dataclass element, without unset (None) fields."""
    return {k: v for k, v in asdict(obj).items() if v is not None}


# --- per-run scalars ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProbeScalar:
    """A diagnostic of the run: ``probe`` records whose ``key`` matches (a glob), at ``step``
    (``first``, ``last`` or a number), of ``layer`` (``all``, ``first``, ``last`` or an index,
    negative from the end) or of the layers in the ``fraction`` of the stack (``[0.75, 1.0]``:
    the last quarter), combined by ``reduce``."""

    probe: str
    key: str = "*"
    layer: str | int = "all"
    step: str | int = "first"
    reduce: str = "mean"
    fraction: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        _str(self.probe, "probe")
        _str(self.key, "key")
        if self.reduce not in REDUCES:
            raise choice_error("reduce", self.reduce, REDUCES)
        _layer_or_step(self.layer, "layer", ("all", "first", "last"))
        _layer_or_step(self.step, "step", ("first", "last"))
        if self.fraction is not None:
            f = self.fraction
            ok = isinstance(f, (list, tuple)) and len(f) == 2
            ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in f)
            if not ok or not 0 <= float(f[0]) < float(f[1]) <= 1:
                raise ConfigError("fraction", f"got {f!r}, expected [lo, hi], 0 <= lo < hi <= 1")
            object.__setattr__(self, "fraction", (float(f[0]), float(f[1])))


@dataclass(frozen=True)
class MetricScalar:
    """A logged metric reduced over steps (``reduce``); with ``below``: the first step whose
    value, averaged over ``window`` logged values, is at most ``below`` (infinity if never)."""

    metric: str
    reduce: str = "last"
    below: float | None = None
    window: int = 5

    def __post_init__(self) -> None:
        _str(self.metric, "metric")
        if self.reduce not in REDUCES:
            raise choice_error("reduce", self.reduce, REDUCES)
        if self.below is not None and (
            isinstance(self.below, bool) or not isinstance(self.below, (int, float))
        ):
            raise ConfigError("below", f"got {self.below!r}, expected a number")
        _int(self.window, "window", 1)


@dataclass(frozen=True)
class ExprScalar:
    """Arithmetic over the run's other scalars (``rms_last / rms_first``)."""

    expr: str

    def __post_init__(self) -> None:
        ex.parse(self.expr, "expr")


Scalar = ProbeScalar | MetricScalar | ExprScalar


def scalar_from(data: Any, where: str) -> Scalar:
    """A scalar from its table: one of ``probe``, ``metric``, ``expr`` says which kind."""
    if isinstance(data, (ProbeScalar, MetricScalar, ExprScalar)):
        return data
    data = _table(data, where)
    for key, cls in (("probe", ProbeScalar), ("metric", MetricScalar), ("expr", ExprScalar)):
        if key in data:
            return _build(cls, data, where)  # type: ignore[no-any-return]
    raise ConfigError(where, "a scalar has one of: probe, metric, expr")


# --- quantities over runs -------------------------------------------------------------------------
@dataclass(frozen=True)
class Of:
    """A per-run scalar over the points matching ``where`` (a list value matches any of its
    items), each point averaged over its seeds first, then combined by ``agg``."""

    of: str
    where: Mapping[str, Any] = field(default_factory=dict)
    agg: str = "mean"

    def __post_init__(self) -> None:
        _str(self.of, "of")
        object.__setattr__(self, "where", _where(self.where))
        if self.agg not in AGGS:
            raise choice_error("agg", self.agg, AGGS)


@dataclass(frozen=True)
class Slope:
    """Least-squares slope of log(scalar) on log(x) over matching points (``log = false``:
    linear)."""

    slope: str
    x: str
    where: Mapping[str, Any] = field(default_factory=dict)
    log: bool = True

    def __post_init__(self) -> None:
        _str(self.slope, "slope")
        _str(self.x, "x")
        object.__setattr__(self, "where", _where(self.where))
        if not isinstance(self.log, bool):
            raise ConfigError("log", f"got {self.log!r}, expected true or false")


@dataclass(frozen=True)
class Trend:
    """Spearman's rank correlation of a scalar with ``x`` over matching points (1 = strictly
    increasing)."""

    trend: str
    x: str
    where: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _str(self.trend, "trend")
        _str(self.x, "x")
        object.__setattr__(self, "where", _where(self.where))


@dataclass(frozen=True)
class Expr:
    """Arithmetic over quantities defined before it."""

    expr: str

    def __post_init__(self) -> None:
        ex.parse(self.expr, "expr")


Quantity = Of | Slope | Trend | Expr


def quantity_from(data: Any, where: str) -> Quantity:
    """A quantity from its table: exactly one of ``of``, ``slope``, ``trend``, ``expr``."""
    if isinstance(data, (Of, Slope, Trend, Expr)):
        return data
    data = _table(data, where)
    kinds = {"of": Of, "slope": Slope, "trend": Trend, "expr": Expr}
    present = [k for k in kinds if k in data]
    if len(present) != 1:
        raise ConfigError(where, f"a quantity has exactly one of: {', '.join(kinds)}")
    if present[0] in ("slope", "trend") and "x" not in data:
        raise ConfigError(f"{where}.x", f"a {present[0]} needs the axis x it is taken over")
    return _build(kinds[present[0]], data, where)  # type: ignore[no-any-return]


def quantity_input(q: Quantity) -> str | None:
    """The per-run scalar a quantity reads (None for an ``Expr``)."""
    if isinstance(q, Of):
        return q.of
    if isinstance(q, Slope):
        return q.slope
    if isinstance(q, Trend):
        return q.trend
    return None


# --- checks ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Paper:
    """What the paper reports for a check, and where (``Fig. 3``, ``Theorem 2``, ``Table 1``)."""

    reports: str
    where: str


@dataclass(frozen=True)
class Check:
    """A criterion: ``expr`` over quantities must hold.

    Attributes:
        expr: a comparison over quantities; its threshold comes from the paper (``paper``).
        label: the check in words.
        paper: what the paper reports and where; the report prints it beside our number.
        effect: a quantity that is this check's effect size; it is computed on each seed's runs
            alone and reported as the mean with a 95% t interval over the seeds.
        unit: the effect's unit as printed (``x`` for a ratio, ``nats``, ``""``).
        per_seed: evaluate ``expr`` on each seed's runs alone ("holds on k of n seeds").
        min_seeds: a per-seed check with fewer seeds measured is undecided.
        min_pass: seeds on which it must hold (default: every seed measured); it fails when it
            fails on that many; in between the seeds disagree and it is undecided.
        informational: reported (a contrast, another init), not counted towards the verdict.
    """

    expr: str
    label: str = ""
    paper: Paper | None = None
    effect: str = ""
    unit: str = ""
    per_seed: bool = False
    min_seeds: int = 3
    min_pass: int = 0
    informational: bool = False

    def __post_init__(self) -> None:
        ex.parse(self.expr, "expr")
        if isinstance(self.paper, Mapping):
            paper = _table(self.paper, "paper")
            _keys(paper, ("reports", "where"), "paper")
            object.__setattr__(
                self,
                "paper",
                Paper(
                    _str(paper.get("reports", ""), "paper.reports"),
                    _str(paper.get("where", ""), "paper.where"),
                ),
            )
        for name in ("min_seeds", "min_pass"):
            _int(getattr(self, name), name)
        for name in ("label", "effect", "unit"):
            _str(getattr(self, name), name)
        for name in ("per_seed", "informational"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, f"got {getattr(self, name)!r}, expected true or false")


def check_from(data: Any, where: str) -> Check:
    if isinstance(data, Check):
        return data
    return _build(Check, _table(data, where), where)  # type: ignore[no-any-return]


# --- figures --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Figure:
    """A figure of the report: ``type`` is a kind of `resnorm.report.kinds.FIGURE_KINDS`; the
    kind's keys go in ``options``; ``caption`` says what to look at; ``hlines`` are reference
    levels (``{"y": 2.5, "label": "threshold"}``) and ``slopes`` theoretical log-log slopes
    (``{"slope": -0.5, "label": "L^-1/2"}``)."""

    type: str
    title: str = ""
    caption: str = ""
    hlines: tuple[Mapping[str, Any], ...] = ()
    slopes: tuple[Mapping[str, Any], ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "title": self.title, "caption": self.caption}
        out["hlines"] = [dict(h) for h in self.hlines]
        out["slopes"] = [dict(s) for s in self.slopes]
        return {**out, **dict(self.options)}


def figure_from(data: Any, where: str) -> Figure:
    if isinstance(data, Figure):
        return data
    data = dict(_table(data, where))
    kind = data.get("type")
    if kind not in FIGURE_KINDS:
        raise choice_error(f"{where}.type", kind, FIGURE_KINDS)
    required, optional = FIGURE_KINDS[kind]
    _keys(data, (*COMMON_KEYS, *required, *optional), where)
    for key in required:
        if key not in data:
            raise ConfigError(f"{where}.{key}", f"a {kind} figure needs {', '.join(required)}")
    lines = []
    for name, need in (("hlines", "y"), ("slopes", "slope")):
        items = data.pop(name, [])
        if not isinstance(items, (list, tuple)):
            raise ConfigError(f"{where}.{name}", f"got {items!r}, expected a list of tables")
        for i, item in enumerate(items):
            t = _table(item, f"{where}.{name}[{i}]")
            _keys(t, (need, "label"), f"{where}.{name}[{i}]")
            if isinstance(t.get(need), bool) or not isinstance(t.get(need), (int, float)):
                raise ConfigError(f"{where}.{name}[{i}].{need}", "expected a number")
        lines.append(tuple(dict(t) for t in items))
    title = _str(data.pop("title", ""), f"{where}.title")
    caption = _str(data.pop("caption", ""), f"{where}.caption")
    data.pop("type")
    return Figure(kind, title, caption, lines[0], lines[1], data)


def to_dict(element: Any) -> dict[str, Any]:
    """The JSON form of a grammar element (what the manifest records)."""
    if isinstance(element, Figure):
        return element.to_dict()
    return _plain(element)
