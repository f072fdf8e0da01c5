"""The figures of training runs (``resnorm train``, not a study's): a run's train and validation
loss against the step, its per-layer diagnostics over training as heatmaps (layers x steps, one
panel per probe), and the loss curves of several runs overlaid for the comparison page.

Each reads the store only and returns PNG bytes; a run is drawn in its topology's colour
(`resnorm.report.style`), as in the study figures.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.colors import LogNorm, Normalize
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from resnorm.report.canvas import plt, png
from resnorm.report.style import Styler
from resnorm.store import RunRecord, Store

#: Losses are drawn up to this multiple of the uniform loss ln V, as in the study figures, so
#: that a diverged run (loss 1e5) does not flatten every other curve.
CLIP_OVER_UNIFORM = 1.3
#: The most probes drawn as heatmaps on a run page (the rest are in `resnorm runs show`).
MAX_PROBES = 9


def topology(record: RunRecord) -> str:
    t = record.config.get("model", {}).get("topology", "?")
    return str(t.get("name", "?") if isinstance(t, Mapping) else t)


def series(store: Store, run_id: str, name: str) -> tuple[list[int], list[float]]:
    """A metric's finite points, by step."""
    points = [(m.step, m.value) for m in store.metrics(run_id, name) if math.isfinite(m.value)]
    return [s for s, _ in points], [v for _, v in points]


def _clip(ax: Any, uniform: float | None) -> None:
    if uniform is None or not math.isfinite(uniform):
        return
    top = CLIP_OVER_UNIFORM * uniform
    drawn = [y for line in ax.lines for y in line.get_ydata() if math.isfinite(y)]
    if drawn and max(drawn) > top:
        ax.set_ylim(max(0.0, 0.9 * min(drawn)), top)
        ax.text(0.99, 0.98, f"clipped at {CLIP_OVER_UNIFORM:g} ln V", transform=ax.transAxes,
                ha="right", va="top", fontsize="x-small", color="gray")  # fmt: skip


def _uniform(records: Sequence[RunRecord]) -> float | None:
    values = [(r.summary or {}).get("uniform_loss") for r in records]
    finite = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return max(finite) if finite else None


def loss_figure(store: Store, record: RunRecord, dpi: float = 90) -> bytes | None:
    """One run's train loss (line) and validation loss (dashed, markers) against the step, with
    the data's unigram loss as a grey level; None if the run logged no loss."""
    steps, loss = series(store, record.run_id, "loss")
    vsteps, vloss = series(store, record.run_id, "val_loss")
    if not steps and not vsteps:
        return None
    color = Styler()(topology(record)).color
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    if steps:
        ax.plot(steps, loss, color=color, lw=1.6, label="train loss")
    if vsteps:
        ax.plot(vsteps, vloss, color=color, lw=1.4, ls="--", marker="o", ms=4, label="val loss")
    unigram = (record.summary or {}).get("unigram_loss")
    if isinstance(unigram, (int, float)) and math.isfinite(unigram):
        ax.axhline(unigram, color="0.45", lw=1, ls=":", label="unigram loss (data)")
    _clip(ax, _uniform([record]))
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(f"{topology(record)} {record.run_id}", fontsize="medium")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    fig.tight_layout()
    return png(fig, dpi)


def _layer_key(keys: Sequence[str]) -> str:
    """The module a probe is shown at: the whole layer (``decoder``) if logged, else the layer's
    last sub-block (``decoder.mlp``: what the layer hands on), parameters last."""

    def rank(k: str) -> tuple[int, int, int, str]:
        param = k.endswith((".weight", ".bias"))
        return (param, k.count("."), 0 if k.endswith("mlp") else 1, k)

    return min(keys, key=rank)


def _mean(values: Sequence[float]) -> float:
    """The mean of a cell; NaN (drawn blank) if it has no value or a non-finite one, as a
    diverged run logs, so one inf does not blow the colour scale."""
    if not values or not all(math.isfinite(v) for v in values):
        return math.nan
    return sum(values) / len(values)


def _stack(key: str) -> str:
    """The stack a diagnostic key belongs to: its first part (``encoder``, ``decoder``)."""
    return key.split(".", 1)[0]


def layer_grids(store: Store, run_id: str) -> dict[str, tuple[str, list[int], list[list[float]]]]:
    """``label -> (key, steps, values[layer][step])`` of every per-layer probe the run logged
    (NaN where a layer has no finite value at a step); probes in the order first logged.

    The label is the probe's name, or ``"<probe> <stack>"`` for each stack of a run with more
    than one (an encoder-decoder's layers are numbered per stack, so its encoder layer 0 and
    decoder layer 0 are different layers, each with its own grid)."""
    by_probe: dict[str, dict[str, dict[tuple[int, int], list[float]]]] = {}
    for d in store.diagnostics(run_id):
        if d.layer is None or d.key is None:
            continue
        cells = by_probe.setdefault(d.probe, {}).setdefault(d.key, defaultdict(list))
        cells[(d.layer, d.step)].append(d.value)
    out = {}
    for probe, keys in list(by_probe.items())[:MAX_PROBES]:
        stacks = list(dict.fromkeys(_stack(k) for k in keys))
        for stack in sorted(stacks, key=lambda s: (s != "encoder", s)):  # encoder first
            key = _layer_key([k for k in keys if _stack(k) == stack])
            cells = keys[key]
            steps = sorted({s for _, s in cells})
            n_layers = max(layer for layer, _ in cells) + 1
            grid = [[_mean(cells.get((layer, s), [])) for s in steps] for layer in range(n_layers)]
            out[probe if len(stacks) == 1 else f"{probe} {stack}"] = (key, steps, grid)
    return out


def layers_figure(store: Store, run_id: str, dpi: float = 90) -> bytes | None:
    """Small multiples, one heatmap per per-layer probe: layer (rows, 1 at the bottom) x the
    steps the probe was taken at, on a log colour scale where the values are positive and span
    more than a factor of 10; None if the run logged no per-layer probe."""
    grids = layer_grids(store, run_id)
    if not grids:
        return None
    n = len(grids)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 3.0 * rows), squeeze=False)
    for ax, (probe, (key, steps, grid)) in zip(axes.flat, grids.items(), strict=False):
        finite = [v for row in grid for v in row if math.isfinite(v)]
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
        log = lo > 0 and hi / lo > 10
        norm = LogNorm(lo, hi) if log else Normalize(lo, hi if hi > lo else lo + 1e-12)
        image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", norm=norm,
                          interpolation="nearest")  # fmt: skip
        ticks = list(range(len(steps)))
        every = max(1, math.ceil(len(steps) / 8))
        ax.set_xticks(ticks[::every], [str(s) for s in steps[::every]])
        n_layers = len(grid)
        every = max(1, math.ceil(n_layers / 8))
        ax.set_yticks(range(0, n_layers, every), [str(i + 1) for i in range(0, n_layers, every)])
        ax.set_title(f"{probe}  ({key})", fontsize="medium")
        ax.set_xlabel("step")
        ax.set_ylabel("layer")
        bar = fig.colorbar(image, ax=ax, shrink=0.9, label="log scale" if log else None)
        if log:  # 1-2-5 ticks written plainly; matplotlib's default labels every minor tick
            bar.ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            bar.ax.yaxis.set_minor_formatter(NullFormatter())
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    return png(fig, dpi)


def compare_figure(
    store: Store, records: Sequence[RunRecord], labels: Mapping[str, str], dpi: float = 90
) -> bytes:
    """Train loss and validation loss of several runs, overlaid: two panels, one line per run
    in its topology's colour (a variant line style where two runs share a topology)."""
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.0), sharey=True, squeeze=False)
    styler = Styler()
    for ax, (metric, title) in zip(
        axes.flat, (("loss", "train loss"), ("val_loss", "validation loss")), strict=True
    ):
        for r in records:
            steps, values = series(store, r.run_id, metric)
            if not steps:
                continue
            style = styler(labels[r.run_id])
            ax.plot(steps, values, color=style.color, ls=style.ls, lw=1.6, label=labels[r.run_id],
                    marker=style.marker if metric == "val_loss" else None, ms=4)  # fmt: skip
        _clip(ax, _uniform(records))
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("loss (nats/token)")
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    fig.tight_layout()
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="upper left",
                   bbox_to_anchor=(1.0, 0.93), fontsize="small", frameon=False)  # fmt: skip
    return png(fig, dpi)


__all__ = ["compare_figure", "layer_grids", "layers_figure", "loss_figure", "topology"]
