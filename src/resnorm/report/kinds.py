"""The figure kinds the report can draw, with the keys each one needs and accepts.

This table is the one list of figure kinds: a study's figures are validated against it when the
study is built (`resnorm.lab.grammar.Figure`), and `resnorm.report.figures.RENDERERS` must draw
exactly these kinds (a test checks it). It imports nothing heavy, so building a study does not
load matplotlib.
"""

from __future__ import annotations

#: Keys every kind accepts: what to plot from (``where``), how to split it (``series``,
#: ``panels``), axes and reference lines.
COMMON_KEYS: tuple[str, ...] = (
    *("type", "title", "caption", "where", "series", "panels", "logx", "logy", "ylabel"),
    *("hline", "hlines", "slopes", "sharey"),
)

#: kind -> (required keys, further optional keys)
FIGURE_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "layers": (("probe",), ("key", "step")),
    "scaling": (("y", "x"), ()),
    "heatmap": (("value", "x", "y"), ("flag",)),
    "curves": (("metric",), ()),
    "bars": (("value", "x"), ()),
}
