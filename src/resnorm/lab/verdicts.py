"""From stored runs to a verdict: per-run scalars, study quantities, checks.

1. **Per-run scalars** (`run_scalars`). Every run has ``done``, ``diverged``, ``stuck``,
   ``failed`` (0/1); a training run also ``val_loss``, ``train_loss``, ``min_val_loss``,
   ``uniform_loss``, ``unigram_loss`` and ``final_loss``: the final validation loss, with a
   diverged run scored at the uniform loss ln(V) (it ended having learned nothing usable). A
   study adds its own (``StudySpec.scalars``), each one of:

   * ``{probe = "grad_norm", key = "decoder.mlp.down.weight", layer = "last", step = "first"}``:
     a diagnostic; ``key`` may be a glob (``decoder.*``), ``layer`` an index (negative from the
     end), ``first``, ``last`` or ``all``; with several matches ``reduce`` (``max``, ``min``,
     ``mean``; default ``mean``) combines them; ``fraction = [0.75, 1.0]`` keeps the layers in
     that share of the stack (the last quarter); ``step`` is ``first``, ``last`` or a number.
   * ``{metric = "val_loss", reduce = "last"}`` (``last``, ``first``, ``min``, ``max``, ``mean``);
     ``{metric = "loss", below = 2.5}``: the first step whose loss, averaged over a window of
     ``window`` logged values (default 5), is at most 2.5 (infinity if never).
   * ``{expr = "rms_last / rms_embed"}``: arithmetic over the run's other scalars.

2. **Quantities** (`StudySpec.quantities`): numbers over runs. The runs of one point (all its
   seeds) are averaged first; then

   * ``{of = "final_loss", where = {"model.topology" = "post_ln"}, agg = "mean"}``: the scalar
     over the points matching ``where`` (a list value matches any of its items), combined by
     ``agg`` (``mean``, ``max``, ``min``, ``median``, ``count``);
   * ``{slope = "w2_last", x = "model.n_layers", where = {...}}``: the least-squares slope of
     log(scalar) against log(x) (``log = false`` for linear axes);
   * ``{trend = "cosine", x = "model.n_layers", where = {...}}``: Spearman's rank correlation of
     the scalar with x (1 = strictly increasing);
   * ``{expr = "post - deep"}``: arithmetic over other quantities.

3. **Checks** (``StudySpec.checks``): ``{expr = "post - deep >= 0.5"}`` must hold; with
   ``per_seed = true`` it is evaluated on each seed's runs alone and must hold for every seed
   (``min_seeds = 3``: with fewer seeds measured it is undecided, not passed);
   ``informational = true`` marks a check that is reported (a contrast, another init) but does
   not count towards the verdict.

The verdict: ``reproduced`` when every check holds; ``not reproduced`` when a check fails on
complete data (for a per-seed check: on every seed); otherwise ``inconclusive`` (missing data,
NaN, failed runs, or seeds that disagree).
"""

from __future__ import annotations

import fnmatch
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from resnorm.errors import ConfigError, choice_error
from resnorm.lab import expr as ex

BUILTIN_SCALARS: tuple[str, ...] = ("done", "diverged", "stuck", "failed", "val_loss")
BUILTIN_SCALARS += ("train_loss", "min_val_loss", "uniform_loss", "unigram_loss", "final_loss")
QUANTITY_KINDS = ("of", "slope", "trend", "expr")
AGGS = ("mean", "max", "min", "median", "count")
REDUCES = ("mean", "max", "min", "first", "last")
NAN = math.nan


# --- per-run scalars ----------------------------------------------------------------------------
def _series(metrics: Iterable[Sequence[Any]], name: str) -> list[tuple[int, float]]:
    return sorted((int(m[0]), float(m[2])) for m in metrics if m[1] == name)


def _reduce(values: Sequence[float], how: str) -> float:
    if not values:
        return NAN
    if how == "first":
        return values[0]
    if how == "last":
        return values[-1]
    if how == "max":
        return max(values)
    if how == "min":
        return min(values)
    return sum(values) / len(values)


def builtin_scalars(run: Mapping[str, Any], metrics: Sequence[Sequence[Any]]) -> dict[str, float]:
    """The scalars every run has (see the module docstring)."""
    status = run["status"]
    out = {s: float(status == s) for s in ("done", "diverged", "stuck", "failed")}
    config = run.get("config") or {}
    if "train" not in config:
        return out
    summary = run.get("summary") or {}
    data = (run.get("environment") or {}).get("data") or {}
    val = _series(metrics, "val_loss")
    uniform = float(summary.get("uniform_loss", data.get("uniform_loss", NAN)))
    finished = status in ("done", "stuck")
    out["uniform_loss"] = uniform
    out["unigram_loss"] = float(data.get("unigram_loss", NAN))
    out["val_loss"] = float(summary.get("val_loss", NAN)) if finished else NAN
    out["train_loss"] = float(summary.get("loss", NAN)) if finished else NAN
    finite = [v for _, v in val if math.isfinite(v)]
    out["min_val_loss"] = min(finite) if finite else NAN
    out["final_loss"] = out["val_loss"] if finished else uniform if status == "diverged" else NAN
    return out


def run_scalars(
    run: Mapping[str, Any],
    metrics: Sequence[Sequence[Any]],
    diagnostics: Sequence[Sequence[Any]],
    specs: Mapping[str, Mapping[str, Any]],
) -> dict[str, float]:
    """The scalars of one run: the built-in ones and the study's ``specs``.

    Args:
        run: the run record as a dict (``status``, ``config``, ``summary``, ``environment``).
        metrics: ``(step, name, value)`` rows.
        diagnostics: ``(step, probe, layer, key, value, unit)`` rows (layer ``None`` or -1 for
            none).
        specs: the study's scalars, by name, in dependency order.
    """
    out = builtin_scalars(run, metrics)
    for name, spec in specs.items():
        try:
            out[name] = _scalar(spec, metrics, diagnostics, out)
        except (ValueError, ZeroDivisionError, OverflowError):
            out[name] = NAN
    return out


def _scalar(
    spec: Mapping[str, Any],
    metrics: Sequence[Sequence[Any]],
    diagnostics: Sequence[Sequence[Any]],
    known: Mapping[str, float],
) -> float:
    if "expr" in spec:
        return float(ex.evaluate(spec["expr"], known))
    if "metric" in spec:
        series = _series(metrics, spec["metric"])
        if "below" in spec:
            window = int(spec.get("window", 5))
            for i in range(len(series)):
                chunk = [v for _, v in series[max(0, i - window + 1) : i + 1]]
                if sum(chunk) / len(chunk) <= float(spec["below"]):
                    return float(series[i][0])
            return math.inf
        return _reduce([v for _, v in series], spec.get("reduce", "last"))
    rows = [d for d in diagnostics if d[1] == spec["probe"]]
    rows = [d for d in rows if fnmatch.fnmatchcase(d[3] or "", spec.get("key", "*"))]
    if not rows:
        return NAN
    steps = sorted({int(d[0]) for d in rows})
    step = spec.get("step", "first")
    want = steps[0] if step == "first" else steps[-1] if step == "last" else int(step)
    rows = [d for d in rows if int(d[0]) == want]
    if "fraction" in spec:
        lo, hi = (float(f) for f in spec["fraction"])
        layered = sorted({int(d[2]) for d in rows if d[2] is not None and int(d[2]) >= 0})
        n = len(layered)
        keep = {i for k, i in enumerate(layered) if lo * n <= k < hi * n}
        rows = [d for d in rows if d[2] is not None and int(d[2]) in keep]
    layer = spec.get("layer", "all")
    if layer != "all":
        layered = sorted({int(d[2]) for d in rows if d[2] is not None and int(d[2]) >= 0})
        if not layered:
            return NAN
        index = 0 if layer == "first" else -1 if layer == "last" else int(layer)
        if not -len(layered) <= index < len(layered):
            return NAN
        pick = layered[index]
        rows = [d for d in rows if d[2] is not None and int(d[2]) == pick]
    return _reduce([float(d[4]) for d in rows], spec.get("reduce", "mean"))


# --- quantities over runs -------------------------------------------------------------------------
def matches(row: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    """Whether a run row's point (and part, seed) matches ``where``."""
    for key, want in where.items():
        have = row["seed"] if key == "seed" else row["part"] if key == "part" else None
        if key not in ("seed", "part"):
            if key not in row["point"]:
                return False
            have = row["point"][key]
        options = want if isinstance(want, (list, tuple)) else [want]
        if have not in options:
            return False
    return True


def point_means(rows: Sequence[Mapping[str, Any]], scalar: str) -> list[tuple[dict, float]]:
    """``(point, mean over its seeds)`` for each distinct (part, point) among ``rows``."""
    groups: dict[str, tuple[dict, list[float]]] = {}
    for r in rows:
        key = repr((r["part"], sorted(r["point"].items())))
        groups.setdefault(key, ({"part": r["part"], **r["point"]}, []))[1].append(
            float(r["scalars"].get(scalar, NAN))
        )
    return [(p, sum(v) / len(v)) for p, v in groups.values()]


def _agg(values: Sequence[float], how: str) -> float:
    if how == "count":
        return float(len(values))
    if not values:
        return NAN
    if any(math.isnan(v) for v in values):
        return NAN
    if how == "max":
        return max(values)
    if how == "min":
        return min(values)
    return statistics.median(values) if how == "median" else statistics.fmean(values)


def _xy(
    spec: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], scalar: str
) -> tuple[list[float], list[float]]:
    pts = point_means([r for r in rows if matches(r, spec.get("where", {}))], scalar)
    pairs = sorted((float(p[spec["x"]]), v) for p, v in pts if spec["x"] in p)
    return [x for x, _ in pairs], [y for _, y in pairs]


def slope(xs: Sequence[float], ys: Sequence[float], log: bool = True) -> float:
    """Least-squares slope of y on x (of log y on log x with ``log``); NaN if undefined."""
    if len(xs) < 2 or any(math.isnan(y) for y in ys):
        return NAN
    if log:
        if min(xs) <= 0 or min(ys) <= 0:
            return NAN
        xs, ys = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else NAN


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN if undefined."""
    if len(xs) < 2 or any(math.isnan(y) for y in ys):
        return NAN

    def ranks(v: Sequence[float]) -> list[float]:
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    num = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    den = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return num / den if den else NAN


def quantities(
    specs: Mapping[str, Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]
) -> dict[str, float]:
    """Every quantity of a study over ``rows`` (run rows with ``part``, ``point``, ``seed``,
    ``scalars``), in definition order."""
    out: dict[str, float] = {}
    for name, spec in specs.items():
        if "expr" in spec:
            value = ex.evaluate(spec["expr"], out, f"study.quantities.{name}.expr")
            out[name] = float(value)
        elif "of" in spec:
            pts = point_means([r for r in rows if matches(r, spec.get("where", {}))], spec["of"])
            out[name] = _agg([v for _, v in pts], spec.get("agg", "mean"))
        elif "slope" in spec:
            xs, ys = _xy(spec, rows, spec["slope"])
            out[name] = slope(xs, ys, log=spec.get("log", True))
        else:
            xs, ys = _xy(spec, rows, spec["trend"])
            out[name] = spearman(xs, ys)
    return out


# --- checks and the verdict -----------------------------------------------------------------------
def _outcome(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "missing"
    return "pass" if bool(value) else "fail"


def check(
    c: Mapping[str, Any], specs: Mapping[str, Mapping[str, Any]], rows: Sequence[Mapping]
) -> dict[str, Any]:
    """One check: ``result`` ``pass``/``fail``/``missing``/``mixed`` and the values it used."""
    used = sorted(ex.names(c["expr"]))
    q = quantities(specs, rows)
    values = {n: q.get(n, NAN) for n in used}
    out: dict[str, Any] = {
        "expr": c["expr"],
        "label": c.get("label", ""),
        "informational": bool(c.get("informational", False)),
        "values": values,
        "result": _outcome(ex.evaluate(c["expr"], q)),
    }
    if c.get("per_seed"):
        seeds = sorted({r["seed"] for r in rows})
        per = []
        for s in seeds:
            qs = quantities(specs, [r for r in rows if r["seed"] == s])
            vs = {n: qs.get(n, NAN) for n in used}
            per.append({"seed": s, "values": vs, "result": _outcome(ex.evaluate(c["expr"], qs))})
        out["per_seed"] = per
        need = int(c.get("min_seeds", 1))
        if len(per) < need:
            out["result"] = "missing"
            out["note"] = f"{len(per)} seed(s) measured; the criterion needs {need}"
            return out
        results = {p["result"] for p in per}
        out["result"] = (
            "pass"
            if results == {"pass"}
            else "fail"
            if results == {"fail"}
            else "missing"
            if "missing" in results
            else "mixed"
        )
    return out


def verdict(checks: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """``(verdict, reason)`` from check results (see the module docstring); checks marked
    ``informational`` are reported but do not count."""
    checks = [c for c in checks if not c.get("informational")]
    if not checks:
        return "inconclusive", "the study has no checks"
    results = [c["result"] for c in checks]
    failed = [c["expr"] for c in checks if c["result"] == "fail"]
    if failed:
        return "not reproduced", "failed: " + "; ".join(failed)
    if all(r == "pass" for r in results):
        return "reproduced", "every check holds"
    odd = [f"{c['expr']} ({c.get('note') or c['result']})" for c in checks if c["result"] != "pass"]
    return "inconclusive", "undecided: " + "; ".join(odd)


# --- validation of a spec -----------------------------------------------------------------------
def validate(spec: Any) -> None:
    """Refuse a study whose scalars, quantities, checks or figures are malformed."""
    known = set(BUILTIN_SCALARS)
    for name, s in spec.scalars.items():
        where = f"study.scalars.{name}"
        if "expr" in s:
            missing = ex.names(s["expr"], f"{where}.expr") - known
            if missing:
                raise ConfigError(f"{where}.expr", f"unknown scalars {sorted(missing)}")
        elif "metric" in s:
            if s.get("reduce", "last") not in REDUCES:
                raise choice_error(f"{where}.reduce", s.get("reduce"), REDUCES)
        elif "probe" in s:
            if s.get("reduce", "mean") not in REDUCES:
                raise choice_error(f"{where}.reduce", s.get("reduce"), REDUCES)
        else:
            raise ConfigError(where, "a scalar has one of: probe, metric, expr")
        known.add(name)
    have: set[str] = set()
    for name, q in spec.quantities.items():
        where = f"study.quantities.{name}"
        kinds = [k for k in QUANTITY_KINDS if k in q]
        if len(kinds) != 1:
            raise ConfigError(where, f"a quantity has exactly one of: {', '.join(QUANTITY_KINDS)}")
        kind = kinds[0]
        if kind == "expr":
            missing = ex.names(q["expr"], f"{where}.expr") - have
            if missing:
                raise ConfigError(f"{where}.expr", f"unknown quantities {sorted(missing)}")
        else:
            if q[kind] not in known:
                raise ConfigError(f"{where}.{kind}", f"unknown scalar {q[kind]!r}")
            if kind != "of" and "x" not in q:
                raise ConfigError(f"{where}.x", f"a {kind} needs the axis x it is taken over")
            if q.get("agg", "mean") not in AGGS:
                raise choice_error(f"{where}.agg", q.get("agg"), AGGS)
        have.add(name)
    for i, c in enumerate(spec.checks):
        missing = ex.names(c["expr"], f"study.checks[{i}].expr") - have
        if missing:
            raise ConfigError(f"study.checks[{i}].expr", f"unknown quantities {sorted(missing)}")
