"""`StudySpec`: a study as data: parts (what to run), axes, seeds, measurements, the claim, the
criterion, the figures. Built-in studies build one in Python; users write the same shape in TOML.

A study has one or more *parts*. A part is a run kind (``train``: the trainer; ``probe``:
diagnostics probes on a model at init; or another registered measurement, see
`resnorm.diagnostics.measures.MEASURES`), a base config, axes and seeds. Its runs are the
product of its axes, times its seeds::

    name = "my-depth"
    claim = "Deep Post-LN trains worse than DeepNorm"
    source = "Wang et al. 2022 (arXiv:2203.00555)"

    [[parts]]
    run = "train"
    seeds = [0, 1, 2]
    base = { model = { d_model = 64, n_heads = 4 }, train = { steps = 200 } }
    axes = [
      { grid = { "model.topology" = ["post_ln", "deepnorm"], "model.n_layers" = [6, 24] } },
      { zip = { "train.lr" = [1e-3, 3e-3], "train.warmup_steps" = [0, 0] } },
      { list = [ { "model.norm" = "rmsnorm", label = "rms" } ] },
    ]

    [quantities]
    post = { of = "final_loss", where = { "model.topology" = "post_ln", "model.n_layers" = 24 } }
    deep = { of = "final_loss", where = { "model.topology" = "deepnorm", "model.n_layers" = 24 } }
    gap = { expr = "post - deep" }

    [[checks]]
    expr = "gap >= 0.5"

A single-part study may put ``run``, ``seeds``, ``base`` and ``axes`` at the top level. Axis
keys are (dotted) config paths of the run kind (``model.n_layers``), or ``label`` (a name for
the point, shown in legends; not part of the config); ``seed`` is set by the seeds. Study files
are data: they are parsed, validated and never executed (an ``expr`` is evaluated by a small
arithmetic interpreter, see `resnorm.lab.expr`).
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnorm.errors import ConfigError, choice_error
from resnorm.lab.grammar import (
    Check,
    Figure,
    Quantity,
    Scalar,
    check_from,
    figure_from,
    quantity_from,
    scalar_from,
    to_dict,
)
from resnorm.lab.grammar import _keys as _unknown
from resnorm.typed import check_depth, shown

#: A study name is a file name in the lab (its manifest and report page): no separators, no
#: leading dot, printable ASCII.
SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
AXIS_KINDS = ("grid", "zip", "list")
TAGS = ("label", "part")
VERDICTS = ("reproduced", "not reproduced", "inconclusive")
PROTOCOL_KEYS = (
    *("mirrors", "init", "embedding", "positional", "final_norm", "width", "depth", "task"),
    "metric",
)


@dataclass(frozen=True)
class Axis:
    """One block of axes: ``grid`` (every combination), ``zip`` (values side by side) or
    ``list`` (explicit points, each a mapping of keys to values)."""

    kind: str
    values: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    points: tuple[Mapping[str, Any], ...] = ()

    def expand(self) -> list[dict[str, Any]]:
        """The points of this block, in order."""
        if self.kind == "list":
            return [dict(p) for p in self.points]
        keys = list(self.values)
        if self.kind == "zip":
            return [
                dict(zip(keys, vs, strict=True)) for vs in zip(*self.values.values(), strict=True)
            ]
        combos = itertools.product(*self.values.values())
        return [dict(zip(keys, vs, strict=True)) for vs in combos]


def grid(**values: Sequence[Any]) -> Axis:
    """A grid axis from keyword arguments, ``__`` for dots: ``grid(model__n_layers=[6, 12])``."""
    return Axis("grid", {k.replace("__", "."): tuple(v) for k, v in values.items()})


@dataclass(frozen=True)
class Part:
    """What one group of runs is: a run kind, its base config, axes and seeds.

    Attributes:
        name: the part's name (``part`` in ``where`` clauses); the study's name for one part.
        run: a registered run kind: ``train``, ``probe``, or a measurement (`MEASURES`).
        base: the base config tree of that kind (``model``/``data``/``train`` for ``train``).
        axes: axis blocks; the runs are their product.
        seeds: each point runs once per seed.
        after: for ``train``: probes run on the final weights (e.g. ``layer_drop``), on one
            validation batch, logged at the final step.
    """

    name: str
    run: str
    base: Mapping[str, Any] = field(default_factory=dict)
    axes: tuple[Axis, ...] = ()
    seeds: tuple[int, ...] = (0,)
    after: tuple[str, ...] = ()

    def points(self) -> list[dict[str, Any]]:
        """Every point of the axes' product (without seeds), in order."""
        blocks = [a.expand() for a in self.axes] or [[{}]]
        out = []
        for combo in itertools.product(*blocks):
            merged: dict[str, Any] = {}
            for p in combo:
                merged.update(p)
            out.append(merged)
        return out


@dataclass(frozen=True)
class StudySpec:
    """A study: parts to run, per-run scalars, study quantities, checks and figures, and the
    paper's protocol it mirrors.

    Attributes:
        name: the study's name (``resnorm study run NAME``).
        title: a headline.
        claim: the published claim it tests.
        source: where the claim comes from (with arXiv ids, which the report links).
        parts: what to run (see `Part`).
        scalars: per-run scalars (`resnorm.lab.grammar.Scalar`), by name, in dependency order.
        quantities: study-level numbers over runs (`resnorm.lab.grammar.Quantity`), by name.
        checks: the criterion (`resnorm.lab.grammar.Check`): each must hold.
        figures: what the report plots (`resnorm.lab.grammar.Figure`).
        criterion: the criterion in words (defaults to the checks joined by "and").
        notes: what to know when reading the result (settings, conventions).
        scale: ``quick`` or ``full`` (recorded for the report).
        protocol: the paper's setup this study mirrors: ``mirrors`` (a paragraph) and, by
            aspect, ``init``, ``embedding``, ``positional``, ``final_norm``, ``width``,
            ``depth``, ``task``, ``metric``.
        departures: ``(what, why)`` for each place where this scale departs from the paper.
        headline: ``{"figure": i, "check": j}``: the figure and check the report's index shows.
        overrides: the user's ``-o`` overrides applied to the parts' base configs.

    Mappings are accepted for scalars, quantities, checks and figures (a TOML study, or a
    builder's shorthand) and turned into the typed elements, validated, when the spec is built.
    """

    name: str
    claim: str
    source: str
    parts: tuple[Part, ...]
    title: str = ""
    scalars: Mapping[str, Scalar] = field(default_factory=dict)
    quantities: Mapping[str, Quantity] = field(default_factory=dict)
    checks: tuple[Check, ...] = ()
    figures: tuple[Figure, ...] = ()
    criterion: str = ""
    notes: str = ""
    scale: str = "quick"
    protocol: Mapping[str, str] = field(default_factory=dict)
    departures: tuple[tuple[str, str], ...] = ()
    headline: Mapping[str, int] = field(default_factory=dict)
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not SAFE_NAME.fullmatch(self.name):
            raise ConfigError(
                "study.name",
                f"got {self.name!r}: a study's name names its files in the lab, so it is 1-64 "
                "letters, digits, '.', '_' or '-', not starting with '.'",
            )
        if not self.parts:
            raise ConfigError("study.parts", "a study needs at least one part")
        names = [p.name for p in self.parts]
        if len(set(names)) != len(names):
            raise ConfigError("study.parts", f"part names must differ, got {names}")
        typed = {
            "scalars": {
                str(k): scalar_from(v, f"study.scalars.{shown(k)}") for k, v in self.scalars.items()
            },
            "quantities": {
                str(k): quantity_from(v, f"study.quantities.{shown(k)}")
                for k, v in self.quantities.items()
            },
            "checks": tuple(check_from(c, f"study.checks[{i}]") for i, c in enumerate(self.checks)),
            "figures": tuple(
                figure_from(f, f"study.figures[{i}]") for i, f in enumerate(self.figures)
            ),
            "departures": tuple((str(w), str(y)) for w, y in self.departures),
        }
        for key, value in typed.items():
            object.__setattr__(self, key, value)
        _unknown(self.protocol, PROTOCOL_KEYS, "study.protocol")
        _unknown(self.headline, ("figure", "check"), "study.headline")
        for key, items in (("figure", self.figures), ("check", self.checks)):
            i = self.headline.get(key, 0)
            if isinstance(i, bool) or not isinstance(i, int) or (items and not 0 <= i < len(items)):
                raise ConfigError(
                    f"study.headline.{key}", f"got {i!r}, expected an index < {len(items)}"
                )
        from resnorm.lab.verdicts import validate

        validate(self)

    def criterion_text(self) -> str:
        counted = [c.label or c.expr for c in self.checks if not c.informational]
        return self.criterion or " and ".join(counted)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (what the study manifest records; `study_from_dict` reads it)."""
        return {
            "name": self.name,
            "title": self.title,
            "claim": self.claim,
            "source": self.source,
            "scale": self.scale,
            "criterion": self.criterion_text(),
            "notes": self.notes,
            "protocol": dict(self.protocol),
            "departures": [{"what": w, "why": y} for w, y in self.departures],
            "headline": dict(self.headline),
            "overrides": copy.deepcopy(dict(self.overrides)),
            "parts": [
                {
                    "name": p.name,
                    "run": p.run,
                    "base": copy.deepcopy(dict(p.base)),
                    "axes": [_axis_dict(a) for a in p.axes],
                    "seeds": list(p.seeds),
                    "after": list(p.after),
                }
                for p in self.parts
            ],
            "scalars": {k: to_dict(v) for k, v in self.scalars.items()},
            "quantities": {k: to_dict(v) for k, v in self.quantities.items()},
            "checks": [to_dict(c) for c in self.checks],
            "figures": [to_dict(f) for f in self.figures],
        }


def _axis_dict(axis: Axis) -> dict[str, Any]:
    if axis.kind == "list":
        return {"list": [dict(p) for p in axis.points]}
    return {axis.kind: {k: list(v) for k, v in axis.values.items()}}


# --- reading a study from data (TOML) -------------------------------------------------------------
STUDY_KEYS: tuple[str, ...] = (
    "name",
    "title",
    "claim",
    "source",
    "scale",
    "criterion",
    "notes",
    "parts",
)
STUDY_KEYS += ("scalars", "quantities", "checks", "figures", "run", "seeds", "base", "axes")
STUDY_KEYS += ("after", "protocol", "departures", "headline", "overrides")
PART_KEYS = ("name", "run", "seeds", "base", "axes", "after")


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(where, f"got {value!r}, expected a table")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(where, f"got {value!r}, expected a list")
    return list(value)


def axis_from_dict(data: Any, where: str) -> Axis:
    """One axis block: ``{grid = {...}}``, ``{zip = {...}}`` or ``{list = [...]}``."""
    table = _table(data, where)
    if len(table) != 1 or next(iter(table)) not in AXIS_KINDS:
        raise ConfigError(where, f"an axis is one of {', '.join(AXIS_KINDS)}, got {dict(table)}")
    kind, body = next(iter(table.items()))
    if kind == "list":
        points = tuple(_table(p, f"{where}.list[{i}]") for i, p in enumerate(_list(body, where)))
        for i, p in enumerate(points):
            for k in p:
                _check_key(str(k), f"{where}.list[{i}].{shown(k)}")
        return Axis("list", points=tuple(dict(p) for p in points))
    values = {
        str(k): tuple(_list(v, f"{where}.{kind}.{shown(k)}"))
        for k, v in _table(body, where).items()
    }
    for k in values:
        _check_key(k, f"{where}.{kind}.{shown(k)}")
    if kind == "zip" and len({len(v) for v in values.values()}) > 1:
        lengths = {k: len(v) for k, v in values.items()}
        raise ConfigError(f"{where}.zip", f"zipped values need equal lengths, got {lengths}")
    return Axis(kind, values)


def _check_key(key: str, where: str) -> None:
    if key == "seed":
        raise ConfigError(where, "seeds are set by the part's seeds list, not an axis")
    if not key or key.startswith(".") or key.endswith("."):
        raise ConfigError(where, "an axis key is a (dotted) config path, or label or part")


def part_from_dict(data: Mapping[str, Any], where: str, default_name: str) -> Part:
    _unknown(data, PART_KEYS, where)
    from resnorm.lab.tasks import run_kinds

    if "run" not in data:  # an empty study file must not start a default training run
        raise ConfigError(
            f"{where}.run", f"say what to run: one of {', '.join(run_kinds())} (no default)"
        )
    run = data["run"]
    if not isinstance(run, str) or run not in run_kinds():
        raise choice_error(f"{where}.run", run, run_kinds())
    seeds = tuple(_list(data.get("seeds", [0]), f"{where}.seeds"))
    if not seeds:
        raise ConfigError(f"{where}.seeds", "an empty list runs nothing: give at least one seed")
    for i, s in enumerate(seeds):
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ConfigError(f"{where}.seeds[{i}]", f"got {s!r}, expected an integer >= 0")
    axes = tuple(
        axis_from_dict(a, f"{where}.axes[{i}]")
        for i, a in enumerate(_list(data.get("axes", []), f"{where}.axes"))
    )
    after = tuple(str(a) for a in _list(data.get("after", []), f"{where}.after"))
    base = dict(_table(data.get("base", {}), f"{where}.base"))
    name = data.get("name", default_name)
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise ConfigError(f"{where}.name", f"got {name!r}, expected 1-64 letters, digits, . _ -")
    return Part(name, run, base, axes, seeds, after)


def study_from_dict(data: Mapping[str, Any], default_name: str = "study") -> StudySpec:
    """Validate a study's data (from TOML or JSON) into a `StudySpec`; every error names its
    field (``study.parts[0].axes[1].grid.model.n_layers``)."""
    data = _table(data, "study")
    # Before any value is shown in a message or copied: both recurse, and a deep tree exhausts
    # the stack (RecursionError) instead of naming the problem.
    check_depth(data, "study")
    _unknown(data, STUDY_KEYS, "study")
    name = data.get("name", default_name)
    if "parts" in data:
        shorthand = [k for k in ("run", "seeds", "base", "axes", "after") if k in data]
        if shorthand:
            raise ConfigError(f"study.{shorthand[0]}", "with [[parts]], set it inside each part")
        raw = _list(data["parts"], "study.parts")
        parts = tuple(
            part_from_dict(_table(p, f"study.parts[{i}]"), f"study.parts[{i}]", f"part{i}")
            for i, p in enumerate(raw)
        )
    else:
        single = {k: data[k] for k in ("run", "seeds", "base", "axes", "after") if k in data}
        parts = (part_from_dict(single, "study", name),)
    tables = {
        key: dict(_table(data.get(key, {}), f"study.{key}")) for key in ("scalars", "quantities")
    }
    departures = []
    for i, d in enumerate(_list(data.get("departures", []), "study.departures")):
        d = _table(d, f"study.departures[{i}]")
        _unknown(d, ("what", "why"), f"study.departures[{i}]")
        departures.append((str(d.get("what", "")), str(d.get("why", ""))))
    return StudySpec(
        name=name,
        title=str(data.get("title", "")),
        claim=str(data.get("claim", "")),
        source=str(data.get("source", "")),
        parts=parts,
        scalars=tables["scalars"],
        quantities=tables["quantities"],
        checks=tuple(_list(data.get("checks", []), "study.checks")),
        figures=tuple(_list(data.get("figures", []), "study.figures")),
        criterion=str(data.get("criterion", "")),
        notes=str(data.get("notes", "")),
        scale=str(data.get("scale", "quick")),
        protocol={
            str(k): str(v) for k, v in _table(data.get("protocol", {}), "study.protocol").items()
        },
        departures=tuple(departures),
        headline=dict(_table(data.get("headline", {}), "study.headline")),
        overrides=dict(_table(data.get("overrides", {}), "study.overrides")),
    )


def load_study(path: str | Path) -> StudySpec:
    """A study from a TOML file (its name defaults to the file's stem). The file is data: it is
    parsed and validated, never executed."""
    from resnorm.config import read_toml

    return study_from_dict(read_toml(path), default_name=Path(path).stem)
