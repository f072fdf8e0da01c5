"""The layout shared by the report's figures: which runs go in which panel (a grid when a figure
names two panel keys: rows = the first, columns = the second), one y scale across the panels of
a line figure, seed bands, reference lines (thresholds and theoretical slopes) and one legend
beside the panels, where it cannot cover data.
"""

from __future__ import annotations

import io
import math
import statistics
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from resnorm.report.style import Styler, topology_color, topology_of

Row = Mapping[str, Any]

#: Dash patterns of the threshold lines (``hlines``) and of the slope guides, in order.
HLINE_DASHES: tuple[Any, ...] = ("--", (0, (6, 2, 1, 2)), (0, (8, 4)))
SLOPE_DASHES: tuple[Any, ...] = (":", (0, (1, 3)), (0, (2, 2, 1, 2)))

#: What a band shows, for captions: one interval for every figure of the report. With 2-6 seeds
#: the range is the honest picture (a t interval over 2 seeds is 12.7 standard errors wide).
BAND = "min-max over the seeds"


def keys_of(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def get(row: Row, key: str) -> Any:
    if key == "part":
        return row["part"]
    if key == "seed":
        return row["seed"]
    return row["point"].get(key)


def matches(row: Row, where: Mapping[str, Any]) -> bool:
    """Whether a run row matches a ``where`` clause (a list value matches any item)."""
    for key, want in where.items():
        have = get(row, key)
        if have is None or have not in (want if isinstance(want, (list, tuple)) else [want]):
            return False
    return True


def short(key: str) -> str:
    return key.split(".")[-1]


def label_of(row: Row, keys: Sequence[str]) -> str:
    """A legend or panel label: the values of ``keys`` (topology, label and path shown bare)."""
    parts = []
    for k in keys:
        v = get(row, k)
        parts.append(str(v) if k in ("label", "model.topology", "path") else f"{short(k)}={v}")
    return ", ".join(parts)


def order(rows: Sequence[Row], keys: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        seen.setdefault(label_of(r, keys), None)
    return list(seen)


@dataclass
class Panel:
    """One axes of a figure and the runs drawn in it."""

    ax: Any
    title: str
    rows: list[Row]
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


@dataclass
class Canvas:
    """A figure being drawn: its panels, the styles of its series, its row labels."""

    fig: Figure
    panels: list[Panel]
    styler: Styler = field(default_factory=Styler)
    row_labels: dict[int, str] = field(default_factory=dict)

    def band(
        self, panel: Panel, xs: Sequence[float], groups: list[list[float]], label: str
    ) -> None:
        """Seed mean as a line, min..max over the seeds as a shaded band."""
        style = self.styler(label)
        scale = plt.rcParams["font.size"] / 10  # a thumbnail's larger type thickens its lines too
        means = [statistics.fmean(g) if g else math.nan for g in groups]
        panel.ax.plot(
            xs,
            means,
            marker=style.marker,
            ls=style.ls,
            ms=3.5 * scale,
            lw=1.6 * scale,
            label=label,
            color=style.color,
        )
        drawn = [(x, m) for x, m in zip(xs, means, strict=True) if math.isfinite(m)]
        panel.series.setdefault(label, []).extend(drawn)
        if any(len(g) > 1 for g in groups):
            lo = [min(g) if g else math.nan for g in groups]
            hi = [max(g) if g else math.nan for g in groups]
            panel.ax.fill_between(xs, lo, hi, alpha=0.18, color=style.color, lw=0)


def canvas(
    spec: Mapping[str, Any],
    rows: Sequence[Row],
    width: float = 4.2,
    height: float = 3.2,
    share_y: bool = True,
) -> Canvas:
    """The panels of a figure: one per value of ``panels`` (wrapped in rows of 3), or a grid
    with rows = the first of two ``panels`` keys and columns = the second; with ``share_y`` one
    y scale across them (``sharey = false`` in the spec turns it off)."""
    keys = keys_of(spec.get("panels"))
    share = bool(spec.get("sharey", share_y))
    if len(keys) == 2:
        row_names, col_names = order(rows, keys[:1]), order(rows, keys[1:])
        n_rows, n_cols = len(row_names), len(col_names)
    else:
        names = order(rows, keys) if keys else [""]
        n_cols = min(len(names), 3)
        n_rows = math.ceil(len(names) / n_cols)
    fig, grid = plt.subplots(
        n_rows,
        n_cols,
        figsize=(width * n_cols, height * n_rows),
        squeeze=False,
        sharey="all" if share and n_rows * n_cols > 1 else "none",
    )
    flat = list(grid.flat)
    panels: list[Panel] = []
    out = Canvas(fig, panels)
    if len(keys) == 2:
        for ri, rname in enumerate(row_names):
            out.row_labels[ri * n_cols] = rname
            for ci, cname in enumerate(col_names):
                mine = [
                    r
                    for r in rows
                    if label_of(r, keys[:1]) == rname and label_of(r, keys[1:]) == cname
                ]
                panels.append(Panel(flat[ri * n_cols + ci], cname if ri == 0 else "", mine))
    else:
        for ax, name in zip(flat, names, strict=False):
            mine = [r for r in rows if not keys or label_of(r, keys) == name]
            panels.append(Panel(ax, name, mine))
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    return out


def _anchor(panel: Panel, label: str) -> tuple[list[tuple[float, float]], str]:
    """The points a slope guide is drawn through and its colour: the series of the topology its
    label names ("Pre-LN theory: L^-1/2" -> pre_ln), in that topology's colour; else every
    series of the panel, in black."""
    topo = topology_of(label.lower().replace("-", "_"))
    if topo is not None:
        mine = [pts for name, pts in panel.series.items() if topology_of(name) == topo]
        exact = panel.series.get(topo)
        if exact or mine:
            return sorted(exact or [p for pts in mine for p in pts]), topology_color(topo)
    return sorted(p for pts in panel.series.values() for p in pts), "black"


def _references(cv: Canvas, spec: Mapping[str, Any]) -> None:
    """Threshold lines (dashed) and theoretical log-log slopes (dotted, through the middle data
    point of the series they are about, or of the panel), each with its label in the legend."""
    for panel in cv.panels:
        for i, h in enumerate(spec.get("hlines") or []):
            panel.ax.axhline(
                float(h["y"]),
                color="0.25",
                lw=1.1,
                ls=HLINE_DASHES[i % len(HLINE_DASHES)],
                label=h.get("label") or f"y = {h['y']:g}",
                zorder=1,
            )
        for i, s in enumerate(spec.get("slopes") or []):
            k, label = float(s["slope"]), str(s.get("label") or "")
            pts, color = _anchor(panel, label)
            xs = sorted({x for x, _ in pts if x > 0})
            if not pts or len(xs) < 2:
                continue
            x0, y0 = pts[len(pts) // 2]
            if x0 <= 0 or y0 <= 0:
                continue  # a power law through a non-positive point is not drawn
            panel.ax.plot(
                xs,
                [y0 * (x / x0) ** k for x in xs],
                color=color,
                lw=1.3,
                ls=SLOPE_DASHES[i % len(SLOPE_DASHES)],
                label=f"{label} (slope {k:g})" if label else f"slope {k:g}",
                zorder=1,
            )


def _tidy_log_y(ax: Any) -> None:
    """On a log y axis spanning less than two decades, ticks at 1-2-5 written plainly (0.2, 0.5,
    1, 2): matplotlib's default labels every minor tick in scientific notation, which crowds."""
    if ax.get_yscale() != "log":
        return
    lo, hi = ax.get_ylim()
    if lo > 0 and hi / lo < 100:
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def png(fig: Figure, dpi: float) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def finish(cv: Canvas, spec: Mapping[str, Any], xlabel: str, ylabel: str, dpi: float = 90) -> bytes:
    """Labels, reference lines, one legend to the right of the panels, and the PNG."""
    _references(cv, spec)
    # a long label (Var[h(W+dW) - h(W)] / Var[h(W)]) would outgrow a short panel: two lines
    ylabel = textwrap.fill(spec.get("ylabel") or ylabel, 26)
    cols = max(1, len([p for p in cv.panels if p.ax.get_subplotspec().is_first_row()]))
    for i, panel in enumerate(cv.panels):
        ax = panel.ax
        ss = ax.get_subplotspec()
        if ss.is_last_row() or i + cols >= len(cv.panels):
            ax.set_xlabel(xlabel)
        if ss.is_first_col():
            row = cv.row_labels.get(i)
            ax.set_ylabel(f"{row}\n{ylabel}" if row else ylabel)
        ax.grid(True, which="major", alpha=0.3)
        _tidy_log_y(ax)
        ax.set_title(panel.title, fontsize="medium")
    seen: dict[str, Any] = {}
    for panel in cv.panels:
        for handle, label in zip(*panel.ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if spec.get("title"):
        cv.fig.suptitle(spec["title"], fontsize="large")
    cv.fig.tight_layout()
    if seen:
        cv.fig.legend(
            list(seen.values()),
            list(seen),
            loc="upper left",
            bbox_to_anchor=(1.0, 0.93),
            fontsize="small",
            frameon=False,
        )
    return png(cv.fig, dpi)


__all__ = ["BAND", "Canvas", "Panel", "canvas", "finish", "label_of", "matches", "order", "png"]
