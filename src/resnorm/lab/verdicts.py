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

3. **Checks** (`resnorm.lab.grammar.Check`): ``expr`` must hold. With ``per_seed`` it is
   evaluated on each seed's runs alone: it holds when it holds on ``min_pass`` seeds (default:
   every seed measured), fails when it fails on that many, and is undecided when the seeds
   disagree or fewer than ``min_seeds`` were measured. A check's ``effect`` (a quantity) is
   computed on each seed's runs and reported as the mean with its 95% Student-t interval over
   the seeds; its ``paper`` (what the paper reports, and where) is printed beside it.
   ``informational`` checks are reported (a contrast, another init) but do not count.

The verdict: ``reproduced`` when every counted check holds; ``not reproduced`` when one fails;
otherwise ``inconclusive`` (missing data, NaN, failed runs, or seeds that disagree).
"""

from __future__ import annotations

import fnmatch
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from resnorm.errors import ConfigError
from resnorm.lab import expr as ex
from resnorm.lab.grammar import (
    Check,
    Expr,
    ExprScalar,
    MetricScalar,
    Of,
    Quantity,
    Scalar,
    Slope,
    Trend,
    check_from,
    quantity_from,
    quantity_input,
    scalar_from,
)
from resnorm.store.records import Diagnostic, Metric

BUILTIN_SCALARS: tuple[str, ...] = ("done", "diverged", "stuck", "failed", "val_loss")
BUILTIN_SCALARS += ("train_loss", "min_val_loss", "uniform_loss", "unigram_loss", "final_loss")
NAN = math.nan


# --- per-run scalars ----------------------------------------------------------------------------
def _series(metrics: Iterable[Metric], name: str) -> list[tuple[int, float]]:
    return sorted((m.step, float(m.value)) for m in metrics if m.name == name)


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


def builtin_scalars(run: Mapping[str, Any], metrics: Sequence[Metric]) -> dict[str, float]:
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
    metrics: Sequence[Metric],
    diagnostics: Sequence[Diagnostic],
    specs: Mapping[str, Scalar | Mapping[str, Any]],
) -> dict[str, float]:
    """The scalars of one run: the built-in ones and the study's ``specs``.

    Args:
        run: the run record as a dict (``status``, ``config``, ``summary``, ``environment``).
        metrics: the run's stored metrics.
        diagnostics: the run's stored diagnostics (`resnorm.store.records.Diagnostic`).
        specs: the study's scalars, by name, in dependency order.
    """
    out = builtin_scalars(run, metrics)
    for name, raw in specs.items():
        spec = scalar_from(raw, f"study.scalars.{name}")
        try:
            out[name] = _scalar(spec, metrics, diagnostics, out)
        except (ValueError, ZeroDivisionError, OverflowError):
            out[name] = NAN
    return out


def _layered(rows: Sequence[Diagnostic]) -> list[int]:
    return sorted({d.layer for d in rows if d.layer is not None})


def _scalar(
    spec: Scalar,
    metrics: Sequence[Metric],
    diagnostics: Sequence[Diagnostic],
    known: Mapping[str, float],
) -> float:
    if isinstance(spec, ExprScalar):
        return float(ex.evaluate(spec.expr, known))
    if isinstance(spec, MetricScalar):
        series = _series(metrics, spec.metric)
        if spec.below is not None:
            for i in range(len(series)):
                chunk = [v for _, v in series[max(0, i - spec.window + 1) : i + 1]]
                if sum(chunk) / len(chunk) <= spec.below:
                    return float(series[i][0])
            return math.inf
        return _reduce([v for _, v in series], spec.reduce)
    rows = [d for d in diagnostics if d.probe == spec.probe]
    rows = [d for d in rows if fnmatch.fnmatchcase(d.key or "", spec.key)]
    if not rows:
        return NAN
    steps = sorted({d.step for d in rows})
    want = (
        steps[0] if spec.step == "first" else steps[-1] if spec.step == "last" else int(spec.step)
    )
    rows = [d for d in rows if d.step == want]
    if spec.fraction is not None:
        lo, hi = spec.fraction
        layered = _layered(rows)
        n = len(layered)
        keep = {i for k, i in enumerate(layered) if lo * n <= k < hi * n}
        rows = [d for d in rows if d.layer in keep]
    if spec.layer != "all":
        layered = _layered(rows)
        if not layered:
            return NAN
        index = 0 if spec.layer == "first" else -1 if spec.layer == "last" else int(spec.layer)
        if not -len(layered) <= index < len(layered):
            return NAN
        pick = layered[index]
        rows = [d for d in rows if d.layer == pick]
    return _reduce([d.value for d in rows], spec.reduce)


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
    q: Slope | Trend, rows: Sequence[Mapping[str, Any]], scalar: str
) -> tuple[list[float], list[float]]:
    pts = point_means([r for r in rows if matches(r, q.where)], scalar)
    pairs = sorted((float(p[q.x]), v) for p, v in pts if q.x in p)
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
    specs: Mapping[str, Quantity | Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]
) -> dict[str, float]:
    """Every quantity of a study over ``rows`` (run rows with ``part``, ``point``, ``seed``,
    ``scalars``), in definition order."""
    out: dict[str, float] = {}
    for name, raw in specs.items():
        q = quantity_from(raw, f"study.quantities.{name}")
        if isinstance(q, Expr):
            out[name] = float(ex.evaluate(q.expr, out, f"study.quantities.{name}.expr"))
        elif isinstance(q, Of):
            pts = point_means([r for r in rows if matches(r, q.where)], q.of)
            out[name] = _agg([v for _, v in pts], q.agg)
        elif isinstance(q, Slope):
            xs, ys = _xy(q, rows, q.slope)
            out[name] = slope(xs, ys, log=q.log)
        else:
            xs, ys = _xy(q, rows, q.trend)
            out[name] = spearman(xs, ys)
    return out


# --- checks, effect sizes and the verdict ---------------------------------------------------------
#: Two-sided 95% critical values of Student's t by degrees of freedom (1..30); above: normal.
_T95: tuple[float, ...] = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
)
_T95 += (2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064)
_T95 += (2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_interval(values: Sequence[float], geometric: bool = False) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean and its two-sided 95% Student-t interval (NaN bounds with
    fewer than 2 values). ``geometric``: of log(values), exponentiated back (a ratio's
    interval then stays positive and symmetric in log space); NaN if a value is <= 0."""
    if geometric:
        if any(not v > 0 for v in values):
            return NAN, NAN, NAN
        mean, lo, hi = t_interval([math.log(v) for v in values])
        return tuple(math.exp(v) if not math.isnan(v) else NAN for v in (mean, lo, hi))  # type: ignore[return-value]
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) != len(values) or not values:
        return NAN, NAN, NAN
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, NAN, NAN
    df = len(values) - 1
    t = _T95[df - 1] if df <= len(_T95) else 1.960
    half = t * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def _outcome(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "missing"
    return "pass" if bool(value) else "fail"


def fmt(value: float) -> str:
    """A number for a sentence: 3 significant digits, ``inf``, ``n/a`` for NaN."""
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.3g}"


def distance(expr: str, values: Mapping[str, float]) -> str:
    """How far a comparison ``LHS op constant`` (or ``constant op RHS``) is from holding, in
    words ("5.23 is 2.77 below the threshold 8"); "" for any other shape of expression."""
    import ast

    tree = ex.parse(expr, "expr").body
    if not isinstance(tree, ast.Compare) or len(tree.ops) != 1:
        return ""
    left, right = tree.left, tree.comparators[0]
    if isinstance(right, ast.Constant):
        side, threshold = left, float(right.value)  # type: ignore[arg-type]
    elif isinstance(left, ast.Constant):
        side, threshold = right, float(left.value)  # type: ignore[arg-type]
    else:
        return ""
    value = float(ex.evaluate(ast.unparse(side), values))
    if math.isnan(value):
        return ""
    gap = value - threshold
    where = "above" if gap > 0 else "below"
    name = ast.unparse(side)
    return f"{name} = {fmt(value)} is {fmt(abs(gap))} {where} the threshold {fmt(threshold)}"


def check(
    c: Check | Mapping[str, Any],
    specs: Mapping[str, Quantity | Mapping[str, Any]],
    rows: Sequence[Mapping],
) -> dict[str, Any]:
    """One check: its ``result`` (``pass``, ``fail``, ``missing``, ``mixed``), the values it
    used, the per-seed results, the effect size with its 95% t interval over seeds, and a
    sentence that puts our number beside the paper's."""
    c = check_from(c, "check")
    used = sorted(ex.names(c.expr))
    q = quantities(specs, rows)
    values = {n: q.get(n, NAN) for n in used}
    out: dict[str, Any] = {
        "expr": c.expr,
        "label": c.label,
        "informational": c.informational,
        "values": values,
        "result": _outcome(ex.evaluate(c.expr, q)),
        "paper": {"reports": c.paper.reports, "where": c.paper.where} if c.paper else None,
        "effect": None,
    }
    seeds = sorted({r["seed"] for r in rows})
    per_seed_q = {s: quantities(specs, [r for r in rows if r["seed"] == s]) for s in seeds}
    if c.per_seed:
        per = []
        for s in seeds:
            vs = {n: per_seed_q[s].get(n, NAN) for n in used}
            if all(math.isnan(v) for v in vs.values()):
                continue  # the check's runs do not have this seed (another part's seeds)
            per.append(
                {"seed": s, "values": vs, "result": _outcome(ex.evaluate(c.expr, per_seed_q[s]))}
            )
        out["per_seed"] = per
        n = len(per)
        k = sum(p["result"] == "pass" for p in per)
        failed = sum(p["result"] == "fail" for p in per)
        need = c.min_pass or n
        out.update(k=k, n=n)
        if n < c.min_seeds:
            out["result"] = "missing"
            out["note"] = f"{n} seed(s) measured; the criterion needs {c.min_seeds}"
        elif k >= need:
            out["result"] = "pass"
        elif failed >= need:
            out["result"] = "fail"
        else:
            out["result"] = "missing" if n - k - failed else "mixed"
            out["note"] = f"holds on {k} of {n} seeds, fails on {failed}; it needs {need}"
    if c.effect:
        seeds = [s for s in seeds if not math.isnan(per_seed_q[s].get(c.effect, NAN))] or seeds
        effect_values = [per_seed_q[s].get(c.effect, NAN) for s in seeds]
        geometric = c.unit == "x" and all(v > 0 for v in effect_values)
        mean, lo, hi = t_interval(effect_values, geometric)
        if len(seeds) == 1 or not seeds:
            mean = q.get(c.effect, NAN)
        out["effect"] = {
            "name": c.effect,
            "mean": mean,
            "lo": lo,
            "hi": hi,
            "n": len(seeds),
            "seeds": seeds,
            "values": effect_values,
            "unit": c.unit,
            "interval": ("geometric mean, " if geometric else "mean, ")
            + f"95% t interval over {len(seeds)} seeds",
        }
    out["sentence"] = sentence(c, out, q)
    return out


def effect_text(effect: Mapping[str, Any] | None) -> str:
    """``3.9x (2.8-5.1, 95% t, 6 seeds)``; "" without an effect."""
    if not effect:
        return ""
    unit = effect.get("unit") or ""
    sep = "" if unit == "x" else " "
    head = f"{fmt(effect['mean'])}{sep}{unit}".rstrip()
    if math.isnan(effect["lo"]):
        return f"{head} ({effect['n']} seed{'s' if effect['n'] != 1 else ''})"
    return f"{head} ({fmt(effect['lo'])} to {fmt(effect['hi'])}, 95% t, {effect['n']} seeds)"


_WORDS = {"pass": "holds", "fail": "fails", "missing": "undecided", "mixed": "undecided"}


def sentence(c: Check, result: Mapping[str, Any], q: Mapping[str, float]) -> str:
    """The check's verdict in one sentence: what held, our effect with its spread, on how many
    seeds, how far a failure is from the threshold, and the paper's number."""
    parts = [f"{_WORDS[result['result']]}: {c.label or c.expr}"]
    effect = effect_text(result.get("effect"))
    if effect:
        parts.append(f"{result['effect']['name']} = {effect}")
    else:
        shown = ", ".join(f"{k} = {fmt(v)}" for k, v in result["values"].items())
        if shown:
            parts.append(shown)
    if "k" in result:
        parts.append(f"on {result['k']} of {result['n']} seeds")
    if result["result"] != "pass":
        gap = distance(c.expr, q)
        if gap:
            parts.append(gap)
        if result.get("note"):
            parts.append(result["note"])
    text = "; ".join(parts)
    if c.paper:
        text += f". The paper: {c.paper.reports} ({c.paper.where})"
    return text


def verdict(checks: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """``(verdict, reason)`` from check results (see the module docstring); checks marked
    ``informational`` are reported but do not count."""
    checks = [c for c in checks if not c.get("informational")]
    if not checks:
        return "inconclusive", "the study has no checks"
    results = [c["result"] for c in checks]
    failed = [c.get("label") or c["expr"] for c in checks if c["result"] == "fail"]
    if failed:
        return "not reproduced", "failed: " + "; ".join(failed)
    if all(r == "pass" for r in results):
        return "reproduced", "every check holds"
    odd = [
        f"{c.get('label') or c['expr']} ({c.get('note') or c['result']})"
        for c in checks
        if c["result"] != "pass"
    ]
    return "inconclusive", "undecided: " + "; ".join(odd)


def summary(spec: Any, checks: Sequence[Mapping[str, Any]], result: str) -> dict[str, Any]:
    """The report's headline (the headline check's effect with its spread, or its values) and,
    unless the claim reproduced, "why this may differ" from the protocol's departures."""
    out: dict[str, Any] = {}
    if checks:
        i = int(spec.headline.get("check", 0))
        c = checks[i]
        text = effect_text(c.get("effect")) or ", ".join(
            f"{k} = {fmt(v)}" for k, v in c["values"].items()
        )
        label = c["effect"]["name"] if c.get("effect") else c.get("label") or c["expr"]
        out["headline"] = {"text": text, "label": label, "check": i}
    if result != "reproduced" and spec.departures:
        items = "; ".join(f"{what} ({why})" for what, why in spec.departures)
        out["why"] = (
            "This run departs from the paper's protocol where CPU scale forces it: "
            f"{items}. A claim about deep or wide models can hold at the paper's scale and not "
            "at ours; `--scale full` runs the paper-sized setting."
        )
    return out


# --- validation of a spec -----------------------------------------------------------------------
def validate(spec: Any) -> None:
    """Refuse a study whose scalars, quantities or checks name what is not defined before them."""
    known = set(BUILTIN_SCALARS)
    for name, s in spec.scalars.items():
        if isinstance(s, ExprScalar):
            missing = ex.names(s.expr) - known
            if missing:
                raise ConfigError(
                    f"study.scalars.{name}.expr", f"unknown scalars {sorted(missing)}"
                )
        known.add(name)
    have: set[str] = set()
    for name, q in spec.quantities.items():
        where = f"study.quantities.{name}"
        if isinstance(q, Expr):
            missing = ex.names(q.expr) - have
            if missing:
                raise ConfigError(f"{where}.expr", f"unknown quantities {sorted(missing)}")
        else:
            scalar = quantity_input(q)
            if scalar not in known:
                kind = type(q).__name__.lower()
                raise ConfigError(f"{where}.{kind}", f"unknown scalar {scalar!r}")
        have.add(name)
    for i, c in enumerate(spec.checks):
        missing = ex.names(c.expr) - have
        if missing:
            raise ConfigError(f"study.checks[{i}].expr", f"unknown quantities {sorted(missing)}")
        if c.effect and c.effect not in have:
            raise ConfigError(f"study.checks[{i}].effect", f"unknown quantity {c.effect!r}")
