"""The report's figures (matplotlib, Agg): per-layer curves, scaling plots, stability heatmaps,
loss curves with seed bands, bars. Each is drawn from a figure spec of a study, the study's
analysed runs (from its manifest) and the store, read-only, and returned as PNG bytes.

Every figure of the report draws a topology in the same colour (`resnorm.report.style`), lays
out its panels the same way and shows the same band, min-max over the seeds
(`resnorm.report.canvas`); `band_note` says so in words for the figure's caption.
"""

from __future__ import annotations

import fnmatch
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from matplotlib.ticker import MaxNLocator

from resnorm.report.canvas import (
    BAND,
    Row,
    canvas,
    finish,
    get,
    keys_of,
    label_of,
    matches,
    order,
    plt,
    png,
    short,
)
from resnorm.report.style import Styler, topology_of


def _scalar(r: Row, name: str) -> float:
    v = r["scalars"].get(name)
    return math.nan if v is None else float(v)


def layers(spec: Mapping[str, Any], rows: Sequence[Row], store: Any, dpi: float = 90) -> bytes:
    """Per-layer curves of one probe (seed mean, min..max band), x = layer (1-based)."""
    series_keys = keys_of(spec.get("series"))
    cv = canvas(spec, rows)
    for panel in cv.panels:
        for name in order(panel.rows, series_keys):
            by_layer: dict[int, list[float]] = defaultdict(list)
            for r in panel.rows:
                if label_of(r, series_keys) != name:
                    continue
                diags = [
                    d
                    for d in store.diagnostics(r["run_id"], spec["probe"])
                    if d.layer is not None
                    and fnmatch.fnmatchcase(d.key or "", spec.get("key", "*"))
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
                cv.band(panel, xs, [by_layer[x] for x in xs], name)
        if spec.get("logy", True):
            panel.ax.set_yscale("log")
        panel.ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return finish(cv, spec, "layer", spec["probe"], dpi)


def scaling(spec: Mapping[str, Any], rows: Sequence[Row], store: Any, dpi: float = 90) -> bytes:
    """A per-run scalar against an axis (seed mean, min..max band), one line per series."""
    series_keys = keys_of(spec.get("series"))
    cv = canvas(spec, rows)
    for panel in cv.panels:
        for name in order(panel.rows, series_keys):
            by_x: dict[float, list[float]] = defaultdict(list)
            for r in panel.rows:
                if label_of(r, series_keys) == name and get(r, spec["x"]) is not None:
                    v = _scalar(r, spec["y"])
                    if math.isfinite(v):
                        by_x[float(get(r, spec["x"]))].append(v)
            xs = sorted(by_x)
            if xs:
                cv.band(panel, xs, [by_x[x] for x in xs], name)
        if spec.get("logx"):
            panel.ax.set_xscale("log", base=2)
        if spec.get("logy"):
            panel.ax.set_yscale("log")
    return finish(cv, spec, short(spec["x"]), spec["y"], dpi)


def heatmap(spec: Mapping[str, Any], rows: Sequence[Row], store: Any, dpi: float = 90) -> bytes:
    """Stability map: one panel per ``panels`` value, y x x cells coloured by the seed mean of
    ``value``, ``D`` where a run was flagged (``flag``, e.g. diverged); one colour scale."""
    cv = canvas(spec, rows, width=3.0, height=2.8, share_y=False)
    xs = sorted({float(get(r, spec["x"])) for r in rows})
    ys = sorted({float(get(r, spec["y"])) for r in rows})
    cells: dict[tuple[int, float, float], list[Row]] = defaultdict(list)
    for i, panel in enumerate(cv.panels):
        for r in panel.rows:
            cells[(i, float(get(r, spec["x"])), float(get(r, spec["y"])))].append(r)
    means = {k: statistics.fmean([_scalar(r, spec["value"]) for r in v]) for k, v in cells.items()}
    finite = [v for v in means.values() if math.isfinite(v)] or [0.0, 1.0]
    vmin, vmax = min(finite), max(finite)
    image = None
    for i, panel in enumerate(cv.panels):
        ax = panel.ax
        grid = [[means.get((i, x, y), math.nan) for x in xs] for y in ys]
        image = ax.imshow(
            grid, origin="lower", cmap="viridis_r", vmin=vmin, vmax=vmax, aspect="auto"
        )
        for yi, y in enumerate(ys):
            for xi, x in enumerate(xs):
                v = grid[yi][xi]
                flagged = any(
                    _scalar(r, spec.get("flag", "diverged")) > 0 for r in cells.get((i, x, y), [])
                )
                text = ("D " if flagged else "") + ("" if math.isnan(v) else f"{v:.2f}")
                dark = not math.isnan(v) and v > (vmin + vmax) / 2
                ax.text(
                    xi,
                    yi,
                    text or "-",
                    ha="center",
                    va="center",
                    fontsize="small",
                    color="white" if dark else "black",
                )
        ax.set_xticks(range(len(xs)), [f"{x:g}" for x in xs])
        ax.set_yticks(range(len(ys)), [f"{y:g}" for y in ys])
        ax.set_title(panel.title, fontsize="medium")
        ax.set_xlabel(short(spec["x"]))
        if ax.get_subplotspec().is_first_col():
            row = cv.row_labels.get(i)
            ax.set_ylabel(f"{row}\n{short(spec['y'])}" if row else short(spec["y"]))
    if image is not None:
        cv.fig.colorbar(image, ax=[p.ax for p in cv.panels], shrink=0.8, label=spec["value"])
    if spec.get("title"):
        cv.fig.suptitle(spec["title"], fontsize="large", y=1.02)
    return png(cv.fig, dpi)


def curves(spec: Mapping[str, Any], rows: Sequence[Row], store: Any, dpi: float = 90) -> bytes:
    """A metric against the step (seed mean, min..max band), one line per series; ``hline``
    names a per-run scalar whose mean is drawn as a level (e.g. the unigram loss)."""
    series_keys = keys_of(spec.get("series"))
    cv = canvas(spec, rows, width=5.0)
    for panel in cv.panels:
        for name in order(panel.rows, series_keys):
            by_step: dict[int, list[float]] = defaultdict(list)
            for r in panel.rows:
                if label_of(r, series_keys) == name:
                    for m in store.metrics(r["run_id"], spec["metric"]):
                        if math.isfinite(m.value):
                            by_step[m.step].append(m.value)
            steps = sorted(by_step)
            if steps:
                cv.band(panel, steps, [by_step[s] for s in steps], name)
        _level(panel.ax, spec.get("hline"), panel.rows)
        if spec.get("logy"):
            panel.ax.set_yscale("log")
        else:
            _clip_divergence(panel.ax, panel.rows)
    return finish(cv, spec, "step", spec["metric"], dpi)


def _level(ax: Any, scalar: str | None, rows: Sequence[Row]) -> None:
    """The mean of a per-run scalar (e.g. the unigram loss) as a dashed level."""
    if not scalar:
        return
    values = [_scalar(r, scalar) for r in rows if math.isfinite(_scalar(r, scalar))]
    if values:
        ax.axhline(statistics.fmean(values), ls="--", color="gray", lw=1, label=scalar)


#: A diverging run's loss can reach 1e5 and flatten every other curve: losses are drawn up to
#: this multiple of the uniform loss ln V (what a model that learned nothing scores), and the
#: panel says that it clipped.
CLIP_OVER_UNIFORM = 1.3


def _clip_divergence(ax: Any, rows: Sequence[Row], bottom: float | None = None) -> None:
    uniform = [
        _scalar(r, "uniform_loss") for r in rows if math.isfinite(_scalar(r, "uniform_loss"))
    ]
    if not uniform:
        return
    top = CLIP_OVER_UNIFORM * max(uniform)
    drawn = [y for line in ax.lines for y in line.get_ydata() if math.isfinite(y)]
    drawn += [p.get_height() for p in ax.patches if math.isfinite(p.get_height())]
    if drawn and max(drawn) > top:
        ax.set_ylim(max(0.0, 0.9 * min(drawn)) if bottom is None else bottom, top)
        ax.text(
            0.99,
            0.98,
            f"clipped at {CLIP_OVER_UNIFORM:g} ln V",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize="x-small",
            color="gray",
        )


def bars(spec: Mapping[str, Any], rows: Sequence[Row], store: Any, dpi: float = 90) -> bytes:
    """Grouped bars: seed mean of ``value`` per ``x`` group and series, min..max whiskers. Bars
    of a topology take its colour (the series', or the group's when there is no series); a
    variant of it (``post_ln, warmup 500``) is hatched as well."""
    series_keys = keys_of(spec.get("series"))
    groups = order(rows, [spec["x"]])
    names = order(rows, series_keys)
    width = max(5.0, 1.2 * len(groups) * max(1, len(names)) / 2)
    cv = canvas({**spec, "panels": None}, rows, width=width)
    ax, styler = cv.panels[0].ax, Styler()
    bar = 0.8 / max(1, len(names))
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
            by_group = not series_keys and topology_of(g) is not None
            style = styler(g if by_group else name)
            ax.bar(
                gi + i * bar,
                mean,
                bar,
                color=style.color,
                hatch=style.hatch,
                edgecolor="white" if style.hatch else None,
                yerr=[[mean - min(values)], [max(values) - mean]],
                capsize=2,
                label=None if by_group or not name or gi else name,
            )
    ax.set_xticks([g + bar * (len(names) - 1) / 2 for g in range(len(groups))], groups)
    _level(ax, spec.get("hline"), rows)
    if "loss" in spec["value"]:
        _clip_divergence(ax, rows, bottom=0.0)  # a bar's height is read from 0
    return finish(cv, spec, short(spec["x"]), spec["value"], dpi)


RENDERERS: dict[str, Callable[..., bytes]] = {
    "layers": layers,
    "scaling": scaling,
    "heatmap": heatmap,
    "curves": curves,
    "bars": bars,
}


def figure_rows(spec: Mapping[str, Any], rows: Sequence[Row]) -> list[Row]:
    """The analysed runs a figure draws (those matching its ``where``)."""
    return [r for r in rows if matches(r, spec.get("where", {}))]


#: A thumbnail is the same figure at a lower resolution with larger type, so that its panel
#: titles and legend stay legible at the size of a card on the index.
THUMB_DPI = 56
THUMB_FONT_SIZE = 17.0


def render(spec: Mapping[str, Any], rows: Sequence[Row], store: Any, thumb: bool = False) -> bytes:
    """The PNG of one figure spec over the study's analysed run rows (``thumb``: small, and
    without the figure's title, which its card on the index already gives)."""
    chosen = figure_rows(spec, rows)
    if not thumb:
        return RENDERERS[spec["type"]](spec, chosen, store, 90)
    with plt.rc_context({"font.size": THUMB_FONT_SIZE}):
        return RENDERERS[spec["type"]]({**spec, "title": ""}, chosen, store, THUMB_DPI)


def _seeds(seeds: Sequence[int]) -> str:
    if not seeds:
        return "no seed"
    if len(seeds) > 3 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(str(s) for s in seeds)


def band_note(spec: Mapping[str, Any], rows: Sequence[Row]) -> str:
    """What the figure's marks show, in words: which seeds, which interval, which lines."""
    seeds = sorted({int(r["seed"]) for r in figure_rows(spec, rows)})
    over = _seeds(seeds)
    kind = spec["type"]
    if kind == "heatmap":
        note = f"Cells: the mean over {over}; D: a run diverged."
    elif kind == "bars":
        note = f"Bars: the mean over {over}; whiskers: {BAND} ({len(seeds)})."
    elif len(seeds) > 1:
        note = f"Lines: the mean over {over}; shaded bands: {BAND} ({len(seeds)})."
    else:
        note = f"Lines: {over} (one seed, no band)."
    if kind == "layers":
        note += f" Measured at the {'last' if spec.get('step') == 'last' else 'first'} step."
    if spec.get("hlines"):
        note += " Dashed: thresholds."
    if spec.get("slopes"):
        note += (
            " Dotted: theoretical slopes, each through the middle data point of the topology it"
            " names (in its colour), else of the panel."
        )
    return note


__all__ = ["RENDERERS", "band_note", "figure_rows", "plt", "render"]
