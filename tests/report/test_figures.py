"""The figures: one colour per topology across every figure (its variants in that colour with
another line style), panel grids with rows and columns and one y scale, threshold and slope
reference lines, and every figure kind the study grammar allows drawn by a renderer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure

from resnorm.nn.topologies import TOPOLOGIES
from resnorm.report import canvas
from resnorm.report.figures import RENDERERS, render
from resnorm.report.kinds import FIGURE_KINDS
from resnorm.report.style import OTHER_PALETTE, Styler, topology_color, topology_of
from resnorm.store import Store


@pytest.fixture(scope="module")
def study(lab: Path) -> dict:
    return json.loads((lab / "studies" / "tiny.json").read_text())


def _draw(spec: dict, study: dict, lab: Path, monkeypatch: pytest.MonkeyPatch) -> Figure:
    """Render one figure spec and keep the matplotlib figure (instead of only its PNG)."""
    kept: list[Figure] = []
    real = canvas.png
    monkeypatch.setattr(canvas, "png", lambda fig, dpi: (kept.append(fig), real(fig, dpi))[1])
    with Store(lab, readonly=True) as store:
        assert render(spec, study["analysis"]["runs"], store)[:4] == b"\x89PNG"
    return kept[0]


def _colors(fig: Figure) -> dict[str, Any]:
    return {
        line.get_label(): line.get_color()
        for ax in fig.axes
        for line in ax.get_lines()
        if not line.get_label().startswith("_")
    }


def test_every_topology_has_its_own_colour_in_registry_order() -> None:
    names = TOPOLOGIES.names()
    colors = [topology_color(n) for n in names]
    assert len(set(colors)) == len(names)
    assert topology_color("post_ln") == colors[0] and topology_color("pre_ln") == colors[1]
    assert topology_color("not_a_topology") == topology_color("not_a_topology")


def test_a_variant_takes_its_topologys_colour_with_another_line_style() -> None:
    style = Styler()
    plain, warm = style("post_ln"), style("post_ln, no warmup")
    assert topology_of("admin (profiled omega)") == "admin"
    assert style("admin (profiled omega)").color == topology_color("admin")
    assert warm.color == plain.color and (warm.ls, warm.marker) != (plain.ls, plain.marker)
    other = style("post_ln, init=xavier")
    assert other.color == plain.color and other not in (plain, warm)
    # Bars have no line style: a variant's bars are hatched, each variant differently.
    assert plain.hatch is None and warm.hatch and other.hatch and warm.hatch != other.hatch
    path = style("attention+skip")
    assert path.color in OTHER_PALETTE and Styler()("attention+skip") == path
    assert style("attention only").color != path.color


def test_the_same_topology_has_the_same_colour_in_two_figures(
    study: dict, lab: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layers, scaling, _, curves, _ = study["spec"]["figures"]
    seen = [_colors(_draw(f, study, lab, monkeypatch)) for f in (layers, scaling, curves)]
    for colors in seen:
        assert {"post_ln", "pre_ln"} <= set(colors)
        assert colors["post_ln"] == topology_color("post_ln")
        assert colors["pre_ln"] == topology_color("pre_ln")


def test_reference_lines_are_drawn_and_labelled(
    study: dict, lab: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = {
        **study["spec"]["figures"][1],
        "hlines": [{"y": 0.01, "label": "threshold"}],
        "slopes": [{"slope": -0.5, "label": "L^-1/2"}, {"slope": 0.0, "label": "Pre-LN: L^0"}],
    }
    fig = _draw(spec, study, lab, monkeypatch)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["threshold"].get_linestyle() == "--"
    assert list(lines["threshold"].get_ydata()) == [0.01, 0.01]

    def through(guide: Any, points: list, slope: float) -> None:
        xs, ys = guide.get_xdata(), guide.get_ydata()
        assert ys[-1] / ys[0] == pytest.approx((xs[-1] / xs[0]) ** slope)
        x0, y0 = sorted(points)[len(points) // 2]
        assert y0 * (xs[0] / x0) ** slope == pytest.approx(ys[0]), "through the middle point"

    # a guide naming no topology goes through the middle point of the whole panel, in black
    pooled = [tuple(p) for s in ("post_ln", "pre_ln") for p in lines[s].get_xydata()]
    plain = lines["L^-1/2 (slope -0.5)"]
    assert plain.get_linestyle() == ":" and plain.get_color() == "black"
    through(plain, pooled, -0.5)
    # one naming a topology ("Pre-LN") goes through that topology's points, in its colour
    pre = lines["Pre-LN: L^0 (slope 0)"]
    assert pre.get_color() == topology_color("pre_ln")
    through(pre, [tuple(p) for p in lines["pre_ln"].get_xydata()], 0.0)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"threshold", "L^-1/2 (slope -0.5)", "post_ln", "pre_ln"} <= set(legend)


def test_two_panel_keys_make_a_grid_with_one_y_scale(
    study: dict, lab: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = {**study["spec"]["figures"][0], "panels": ["model.topology", "model.n_layers"]}
    fig = _draw(spec, study, lab, monkeypatch)
    axes = fig.axes
    assert [a.get_subplotspec().get_geometry()[:2] for a in axes] == [(2, 2)] * 4
    assert all(axes[0].get_shared_y_axes().joined(axes[0], a) for a in axes)
    assert [a.get_title() for a in axes] == ["n_layers=2", "n_layers=4", "", ""]
    assert [a.get_ylabel().split("\n")[0] for a in axes[::2]] == ["post_ln", "pre_ln"]


def test_every_figure_kind_of_the_grammar_has_a_renderer() -> None:
    assert set(RENDERERS) == set(FIGURE_KINDS)


def test_a_diverged_loss_is_clipped_so_the_other_curves_stay_readable() -> None:
    import matplotlib.pyplot as plt

    from resnorm.report.figures import CLIP_OVER_UNIFORM, _clip_divergence

    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [5.0, 3.0, 2.0])  # a run that trains
    ax.plot([0, 1, 2], [5.0, 9e4, 3e5])  # a run whose loss explodes
    _clip_divergence(ax, [{"scalars": {"uniform_loss": 5.5}}])
    low, high = ax.get_ylim()
    assert high == pytest.approx(CLIP_OVER_UNIFORM * 5.5) and low == pytest.approx(1.8)
    assert any("clipped" in t.get_text() for t in ax.texts)
    fig2, ax2 = plt.subplots()
    ax2.plot([0, 1], [5.0, 2.0])  # nothing to clip: the axes are left alone
    before = ax2.get_ylim()
    _clip_divergence(ax2, [{"scalars": {"uniform_loss": 5.5}}])
    assert ax2.get_ylim() == before and not ax2.texts
    plt.close(fig)
    plt.close(fig2)
