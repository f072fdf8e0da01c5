"""The report's figures (matplotlib, Agg): per-layer curves, scaling plots, stability heatmaps,
loss curves with seed bands, bars. Each is drawn from a figure spec of a study, the study's
analysed runs (from its manifest) and the store, read-only, and returned as PNG bytes.
"""

from __future__ import annotations

import fnmatch
import io
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

Row = Mapping[str, Any]


def _keys(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _get(row: Row, key: str) -> Any:
    if key == "part":
        return row["part"]
    if key == "seed":
        return row["seed"]
    return row["point"].get(key)


def matches(row: Row, where: Mapping[str, Any]) -> bool:
    """Whether a run row matches a ``where`` clause (a list value matches any item)."""
    for key, want in where.items():
        have = _get(row, key)
        if have is None or have not in (want if isinstance(want, (list, tuple)) else [want]):
            return False
    return True


def _short(key: str) -> str:
    return key.split(".")[-1]


def label_of(row: Row, keys: Sequence[str]) -> str:
    """A legend or panel label: the values of ``keys`` (``label`` shown bare)."""
    parts = []
    for k in keys:
        v = _get(row, k)
        parts.append(str(v) if k in ("label", "model.topology", "path") else f"{_short(k)}={v}")
    return ", ".join(parts)


def _order(rows: Sequence[Row], keys: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        seen.setdefault(label_of(r, keys), None)
    return list(seen)


def _panels(spec: Mapping[str, Any], rows: Sequence[Row]) -> list[tuple[str, list[Row]]]:
    keys = _keys(spec.get("panels"))
    if not keys:
        return [("", list(rows))]
    return [(p, [r for r in rows if label_of(r, keys) == p]) for p in _order(rows, keys)]


def _figure(n_panels: int, width: float = 4.2, height: float = 3.3) -> tuple[Figure, list[Any]]:
    cols = min(n_panels, 3)
    rows = math.ceil(n_panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n_panels:]:
        ax.set_visible(False)
    return fig, flat[:n_panels]


def _band(ax: Any, xs: Sequence[float], groups: list[list[float]], label: str, color: Any) -> None:
    """Seed mean as a line, min..max over seeds as a band."""
    means = [statistics.fmean(g) if g else math.nan for g in groups]
    ax.plot(xs, means, marker="o", ms=3, lw=1.5, label=label, color=color)
    if any(len(g) > 1 for g in groups):
        lo = [min(g) if g else math.nan for g in groups]
        hi = [max(g) if g else math.nan for g in groups]
        ax.fill_between(xs, lo, hi, alpha=0.2, color=color, lw=0)


def _finish(
    fig: Figure,
    axes: list[Any],
    spec: Mapping[str, Any],
    xlabel: str,
    ylabel: str,
    legend: bool = True,
) -> bytes:
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(spec.get("ylabel", ylabel))
        ax.grid(True, which="major", alpha=0.3)
        if legend and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(spec.get("title", ""), fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _color(i: int) -> Any:
    return plt.get_cmap("tab10")(i % 10)


def layers(spec: Mapping[str, Any], rows: Sequence[Row], store: Any) -> bytes:
    """Per-layer curves of one probe (seed mean, min..max band), x = layer (1-based)."""
    series_keys = _keys(spec.get("series"))
    panels = _panels(spec, rows)
    fig, axes = _figure(len(panels))
    for ax, (title, prows) in zip(axes, panels, strict=True):
        for i, name in enumerate(_order(prows, series_keys)):
            by_layer: dict[int, list[float]] = defaultdict(list)
            for r in prows:
                if label_of(r, series_keys) != name:
                    continue
                diags = [
                    d
                    for d in store.diagnostics(r["run_id"], spec["probe"])
                    if d.layer is not None and fnmatch.fnmatchcase(d.key or "", spec["key"])
                ]
                if not diags:
                    continue
                steps = sorted({d.step for d in diags})
                step = steps[-1] if spec.get("step", "first") == "last" else steps[0]
                values: dict[int, list[float]] = defaultdict(list)
                for d in diags:
                    if d.step == step:
                        values[d.layer].append(d.value)
                for layer, v in values.items():
                    by_layer[layer + 1].append(statistics.fmean(v))
            if by_layer:
                xs = sorted(by_layer)
                _band(ax, xs, [by_layer[x] for x in xs], name, _color(i))
        if spec.get("logy", True):
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title, fontsize=9)
    return _finish(fig, axes, spec, "layer", spec["probe"])


def _scalar(r: Row, name: str) -> float:
    v = r["scalars"].get(name)
    return math.nan if v is None else float(v)


def scaling(spec: Mapping[str, Any], rows: Sequence[Row], store: Any) -> bytes:
    """A per-run scalar against an axis (seed mean, min..max band), one line per series."""
    series_keys = _keys(spec.get("series"))
    panels = _panels(spec, rows)
    fig, axes = _figure(len(panels))
    for ax, (title, prows) in zip(axes, panels, strict=True):
        for i, name in enumerate(_order(prows, series_keys)):
            by_x: dict[float, list[float]] = defaultdict(list)
            for r in prows:
                if label_of(r, series_keys) == name and _get(r, spec["x"]) is not None:
                    v = _scalar(r, spec["y"])
                    if math.isfinite(v):
                        by_x[float(_get(r, spec["x"]))].append(v)
            xs = sorted(by_x)
            if xs:
                _band(ax, xs, [by_x[x] for x in xs], name, _color(i))
        if spec.get("logx"):
            ax.set_xscale("log", base=2)
        if spec.get("logy"):
            ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
    return _finish(fig, axes, spec, _short(spec["x"]), spec["y"])


def heatmap(spec: Mapping[str, Any], rows: Sequence[Row], store: Any) -> bytes:
    """Stability map: one panel per ``panels`` value, y x x cells coloured by the seed mean of
    ``value``, ``D`` where a run was flagged (``flag``, e.g. diverged)."""
    panels = _panels(spec, rows)
    xs = sorted({float(_get(r, spec["x"])) for r in rows})
    ys = sorted({float(_get(r, spec["y"])) for r in rows})
    cells: dict[tuple[str, float, float], list[Row]] = defaultdict(list)
    for title, prows in panels:
        for r in prows:
            cells[(title, float(_get(r, spec["x"])), float(_get(r, spec["y"])))].append(r)
    means = {k: statistics.fmean([_scalar(r, spec["value"]) for r in v]) for k, v in cells.items()}
    finite = [v for v in means.values() if math.isfinite(v)] or [0.0, 1.0]
    vmin, vmax = min(finite), max(finite)
    fig, axes = _figure(len(panels), width=3.0, height=2.8)
    image = None
    for ax, (title, _) in zip(axes, panels, strict=True):
        grid = [[means.get((title, x, y), math.nan) for x in xs] for y in ys]
        image = ax.imshow(
            grid, origin="lower", cmap="viridis_r", vmin=vmin, vmax=vmax, aspect="auto"
        )
        for yi, y in enumerate(ys):
            for xi, x in enumerate(xs):
                v = grid[yi][xi]
                flagged = any(
                    _scalar(r, spec.get("flag", "diverged")) > 0
                    for r in cells.get((title, x, y), [])
                )
                text = ("D " if flagged else "") + ("" if math.isnan(v) else f"{v:.2f}")
                ax.text(
                    xi,
                    yi,
                    text or "-",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if not math.isnan(v) and v > (vmin + vmax) / 2 else "black",
                )
        ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
        ax.set_yticks(range(len(ys)), [f"{y:g}" for y in ys])
        ax.set_title(title, fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label=spec["value"])
    buf = io.BytesIO()
    fig.suptitle(spec.get("title", ""), fontsize=10, y=1.02)
    for i, ax in enumerate(axes):
        ax.set_xlabel(_short(spec["x"]))
        if i % 3 == 0:
            ax.set_ylabel(_short(spec["y"]))
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def curves(spec: Mapping[str, Any], rows: Sequence[Row], store: Any) -> bytes:
    """A metric against the step (seed mean, min..max band), one line per series."""
    series_keys = _keys(spec.get("series"))
    panels = _panels(spec, rows)
    fig, axes = _figure(len(panels), width=5.0)
    for ax, (title, prows) in zip(axes, panels, strict=True):
        for i, name in enumerate(_order(prows, series_keys)):
            by_step: dict[int, list[float]] = defaultdict(list)
            for r in prows:
                if label_of(r, series_keys) == name:
                    for m in store.metrics(r["run_id"], spec["metric"]):
                        if math.isfinite(m.value):
                            by_step[m.step].append(m.value)
            steps = sorted(by_step)
            if steps:
                _band(ax, steps, [by_step[s] for s in steps], name, _color(i))
        line = spec.get("hline")
        if line:
            values = [_scalar(r, line) for r in prows if math.isfinite(_scalar(r, line))]
            if values:
                ax.axhline(statistics.fmean(values), ls="--", color="gray", lw=1, label=line)
        if spec.get("logy"):
            ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
    return _finish(fig, axes, spec, "step", spec["metric"])


def bars(spec: Mapping[str, Any], rows: Sequence[Row], store: Any) -> bytes:
    """Grouped bars: seed mean of ``value`` per ``x`` group and series, min..max whiskers."""
    series_keys = _keys(spec.get("series"))
    groups = _order(rows, [spec["x"]])
    names = _order(rows, series_keys)
    fig, axes = _figure(1, width=max(5.0, 1.2 * len(groups) * max(1, len(names)) / 2))
    ax = axes[0]
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        for gi, g in enumerate(groups):
            values = [
                _scalar(r, spec["value"])
                for r in rows
                if label_of(r, series_keys) == name and label_of(r, [spec["x"]]) == g
            ]
            values = [v for v in values if math.isfinite(v)]
            if not values:
                continue
            mean = statistics.fmean(values)
            err = [[mean - min(values)], [max(values) - mean]]
            ax.bar(
                gi + i * width,
                mean,
                width,
                color=_color(i),
                yerr=err,
                capsize=2,
                label=name if gi == 0 else None,
            )
    ax.set_xticks([g + width * (len(names) - 1) / 2 for g in range(len(groups))], groups)
    return _finish(fig, axes, spec, _short(spec["x"]), spec["value"])


RENDERERS: dict[str, Callable[[Mapping[str, Any], Sequence[Row], Any], bytes]] = {
    "layers": layers,
    "scaling": scaling,
    "heatmap": heatmap,
    "curves": curves,
    "bars": bars,
}


def render(spec: Mapping[str, Any], rows: Sequence[Row], store: Any) -> bytes:
    """The PNG of one figure spec over the study's analysed run rows."""
    chosen = [r for r in rows if matches(r, spec.get("where", {}))]
    return RENDERERS[spec["type"]](spec, chosen, store)
