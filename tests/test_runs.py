"""`resnorm runs list` and `resnorm runs show` on a lab of two tiny runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnorm.cli import main
from resnorm.runs import config_diff, typical_config
from textkit import train_text


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    tmp = tmp_path_factory.mktemp("runs")
    ids = [train_text(tmp).run_id, train_text(tmp, ["model.n_layers=3"]).run_id]
    return tmp / "lab", ids


def test_list_shows_each_run_with_its_difference_from_the_typical_config(
    lab: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, (a, b) = lab
    assert main(["runs", "list", "--lab", str(folder)]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    for column in ("run", "status", "topology", "depth", "steps", "loss", "val_loss", "started"):
        assert column in header
    assert len(rows) == 2
    assert rows[0].startswith(a) and rows[1].startswith(b)  # oldest first
    for row in rows:
        assert "pre_ln" in row and "3/3" in row and ("done" in row or "stuck" in row)
    # two runs tie on n_layers: the first run's value is the typical one
    assert rows[0].endswith("(typical)") and rows[1].endswith("model.n_layers=3")


def test_show_prints_config_environment_precision_metrics_and_events(
    lab: tuple[Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, (a, _) = lab
    assert main(["runs", "show", a[:5], "--lab", str(folder)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"run {a} (text)")
    for text in (
        "precision: fp32 (",
        "config:",
        "  model.n_layers = 2",
        "  train.steps = 3",
        "environment:",
        "  torch = ",
        "metrics:",
        "  loss ",
        "  val_loss ",
        "events:",
        "status: running",
    ):
        assert text in out, text


@pytest.mark.parametrize(
    "argv, words",
    [
        (["runs", "show", "0123456789abcdef"], ["no run '0123456789abcdef'"]),
        (["runs", "show", ""], ["no run ''"]),
    ],
)
def test_an_unknown_run_is_one_line_and_exit_2(
    lab: tuple[Path, list[str]],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    words: list[str],
) -> None:
    assert main([*argv, "--lab", str(lab[0])]) == 2
    out, err = capsys.readouterr()
    assert not out and err.startswith("resnorm runs: error: run: ") and err.count("\n") == 1
    for word in words:
        assert word in err


def test_a_folder_without_a_lab_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runs", "list", "--lab", str(tmp_path)]) == 2
    assert "no resnorm lab at" in capsys.readouterr().err


def test_typical_config_takes_each_fields_most_common_value() -> None:
    configs = [
        {"model": {"n_layers": 2, "d_model": 8}, "name": "a"},
        {"model": {"n_layers": 4, "d_model": 8}, "name": "b"},
        {"model": {"n_layers": 4, "d_model": 16}, "name": "c", "parent": "x"},
    ]
    typical = typical_config(configs)
    assert typical == {"model.n_layers": 4, "model.d_model": 8, "name": "a"}
    assert config_diff(configs[0], typical) == ["model.n_layers=2"]  # labels are not shown
    assert config_diff(configs[2], typical) == ["model.d_model=16", 'parent="x"']
