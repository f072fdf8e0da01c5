"""Study specs are data: axes expand as documented, errors name their field, nothing executes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from labkit import TINY_RUNS, tiny_study

from resnorm.errors import ConfigError
from resnorm.lab import Axis, Part, plan, study_from_dict
from resnorm.lab.expr import evaluate, names
from resnorm.lab.spec import axis_from_dict, load_study


def test_grid_zip_and_list_axes_multiply_and_seeds_repeat_every_point() -> None:
    part = Part(
        name="p",
        run="probe",
        axes=(
            axis_from_dict({"grid": {"model.n_layers": [2, 4], "model.topology": ["a", "b"]}}, "x"),
            axis_from_dict({"zip": {"model.d_model": [16, 32], "model.n_heads": [2, 4]}}, "y"),
            axis_from_dict({"list": [{"label": "one"}, {"label": "two"}]}, "z"),
        ),
        seeds=(0, 1, 2),
    )
    points = part.points()
    assert len(points) == 2 * 2 * 2 * 2
    assert points[0] == {
        "model.n_layers": 2,
        "model.topology": "a",
        "model.d_model": 16,
        "model.n_heads": 2,
        "label": "one",
    }
    # zip pairs values, it does not multiply them
    assert {(p["model.d_model"], p["model.n_heads"]) for p in points} == {(16, 2), (32, 4)}
    assert Axis("grid", {"a": (1, 2), "b": (3,)}).expand() == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]


def test_a_study_file_resolves_every_run_with_distinct_ids(tmp_path: Path) -> None:
    _, spec = tiny_study(tmp_path)
    runs = plan(spec, tmp_path / "lab")
    assert len(runs) == TINY_RUNS == len({r.run_id for r in runs})
    train = [r for r in runs if r.run == "train"]
    # a training run's id is its RunConfig's id; the seed sets both train.seed and data.seed
    assert {(r.config["train"]["seed"], r.config["data"]["seed"]) for r in train} == {
        (0, 0),
        (1, 1),
    }
    assert all(r.config["lab"] == str(tmp_path / "lab") for r in train)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"claim": "x", "parts": [{"run": "nope"}]}, "study.parts[0].run"),
        (
            {"claim": "x", "run": "probe", "axes": [{"zip": {"a.b": [1, 2], "c.d": [1]}}]},
            "study.axes[0].zip",
        ),
        (
            {"claim": "x", "run": "probe", "axes": [{"grid": {"seed": [1, 2]}}]},
            "study.axes[0].grid.seed",
        ),
        ({"claim": "x", "run": "probe", "axes": [{"cube": {}}]}, "study.axes[0]"),
        ({"claim": "x", "run": "probe", "sedes": [1]}, "study.sedes"),
        ({"run": "probe", "checks": [{"expr": "q > 1"}]}, "study.checks[0].expr"),
        (
            {"run": "probe", "quantities": {"q": {"expr": "__import__('os')"}}},
            "study.quantities.q.expr",
        ),
        ({"run": "probe", "figures": [{"type": "pie"}]}, "study.figures[0].type"),
    ],
)
def test_a_malformed_study_is_refused_naming_the_field(data: dict, field: str) -> None:
    with pytest.raises(ConfigError) as e:
        study_from_dict(data)
    assert e.value.field == field


def test_a_bad_value_in_an_axis_names_the_study_part_and_field(tmp_path: Path) -> None:
    spec = study_from_dict(
        {"run": "probe", "axes": [{"grid": {"model.topology": ["pre_lnn"]}}]}, "s"
    )
    with pytest.raises(ConfigError, match="Did you mean 'pre_ln'") as e:
        plan(spec, tmp_path)
    assert e.value.field == "s.s.model.topology"


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "a.b",
        "a[0]",
        "'text'",
        "lambda: 1",
        "a if b else c",
        "open('x')",
        "[a]",
        "a @ b",
        "f(x=1)",
        "a := 1",
    ],
)
def test_expressions_in_study_files_are_never_executed_as_code(text: str) -> None:
    with pytest.raises(ConfigError):
        evaluate(text, {"a": 1.0, "b": 2.0, "c": 3.0, "x": 1.0})


def test_expressions_compute_arithmetic_and_treat_nan_as_missing_not_false() -> None:
    values = {"a": 5.0, "b": 2.0, "n": math.nan}
    assert evaluate("a / b >= 2.5 and abs(b - a) == 3", values) is True
    assert evaluate("min(a, b) ** 2 + log(1)", values) == 4.0
    assert evaluate("2 < a < 4", values) is False
    assert math.isnan(evaluate("n < 1", values))
    assert evaluate("n < 1 and a < 1", values) is False  # settled by the known operand
    assert evaluate("n < 1 or a > 1", values) is True
    assert math.isnan(evaluate("n < 1 and a > 1", values))
    assert math.isnan(evaluate("a / 0", values))
    assert names("max(a, b) - c") == {"a", "b", "c"}


def test_figure_kinds_are_the_renderers_table_and_a_figure_is_validated_against_its_kind() -> None:
    from resnorm.lab.grammar import figure_from
    from resnorm.report.figures import RENDERERS
    from resnorm.report.kinds import FIGURE_KINDS

    assert set(RENDERERS) == set(FIGURE_KINDS)
    fig = figure_from(
        {"type": "scaling", "y": "g", "x": "model.n_layers", "slopes": [{"slope": -0.5}]}, "f"
    )
    assert fig.slopes == ({"slope": -0.5},) and fig.to_dict()["y"] == "g"
    with pytest.raises(ConfigError, match=r"f.x: a scaling figure needs y, x"):
        figure_from({"type": "scaling", "y": "g"}, "f")
    with pytest.raises(ConfigError, match=r"f.colour: unknown key"):
        figure_from({"type": "bars", "value": "v", "x": "x", "colour": "red"}, "f")
    with pytest.raises(ConfigError, match=r"f.type: unknown value 'pie'"):
        figure_from({"type": "pie"}, "f")


# --- issue 12: a study's fields are validated when it is read, before anything runs ----------
_PART = {"run": "probe", "base": {"model": {"d_model": 16, "n_heads": 2}}}


@pytest.mark.parametrize(
    ("study", "field"),
    [
        ({"quantities": {"q": {"of": "done", "where": "x"}}}, "study.quantities.q.where"),
        ({"scalars": {"s": {"probe": "g", "fraction": 5}}}, "study.scalars.s.fraction"),
        ({"scalars": {"s": {"probe": "g", "layer": [1]}}}, "study.scalars.s.layer"),
        ({"scalars": {"s": {"probe": "g", "key": 5}}}, "study.scalars.s.key"),
        ({"checks": [{"expr": "1 > 0", "min_seeds": "abc"}]}, "study.checks[0].min_seeds"),
        ({"quantities": {"q": {"slope": "done", "x": []}}}, "study.quantities.q.x"),
        ({"checks": [{"expr": "1" * 400 + " > 0"}]}, "study.checks[0].expr"),
        ({"checks": [{"expr": " + ".join(["1"] * 5000) + " > 0"}]}, "study.checks[0].expr"),
        ({"checks": [{"expr": "(" * 300 + "1" + ")" * 300 + " > 0"}]}, "study.checks[0].expr"),
        ({"name": "../../escaped-study"}, "study.name"),
        ({"name": "nul\x00name"}, "study.name"),
        ({"seeds": []}, "study.seeds"),
    ],
)
def test_malformed_study_fields_fail_when_the_study_is_read(study: dict, field: str) -> None:
    data = {"name": "s", **_PART, **study}
    with pytest.raises(ConfigError) as e:
        study_from_dict(data)
    assert e.value.field == field, str(e.value)


def test_an_empty_study_file_is_refused_instead_of_starting_a_default_training_run(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    with pytest.raises(ConfigError, match=r"study.run: say what to run"):
        load_study(empty)
