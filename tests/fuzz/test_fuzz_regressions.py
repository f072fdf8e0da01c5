"""What the fuzzer found, each pinned by the smallest input that showed it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fuzz.fuzzkit import deep
from resnorm.cli import main
from resnorm.config import RunConfig, load_config
from resnorm.errors import ConfigError
from resnorm.lab import study_from_dict


@pytest.mark.parametrize(
    "tree",
    [
        {"run": "probe", "protocol": deep(5000)},
        {"run": "probe", "seeds": deep(5000)},
        {"run": "probe", "title": deep(5000)},
        {"run": "probe", "axes": [{"grid": {"model.d_model": [deep(5000)]}}]},
        {"run": "probe", "quantities": {"a": {"of": "final_loss", "where": deep(40)}}},
    ],
)
def test_deep_study_is_a_config_error_not_a_recursion_error(tree: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="nested more than"):
        study_from_dict(tree)


def test_deep_run_config_dict_is_a_config_error_not_a_recursion_error() -> None:
    with pytest.raises(ConfigError, match="nested more than"):
        RunConfig.from_dict({"model": {"d_model": deep(5000)}})


@pytest.mark.parametrize("key", ["0\x1e0", "a\x1bb", "x\u2028y", "\x85"])
def test_unknown_key_with_a_control_character_is_shown_escaped(key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, [f"{key}=3"])
    assert str(caught.value).isprintable(), str(caught.value)
    with pytest.raises(ConfigError) as caught:
        study_from_dict({"run": "probe", "scalars": {key: {"nope": 1}}})
    assert str(caught.value).isprintable(), str(caught.value)


def test_cli_error_for_a_control_character_key_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--lab", str(tmp_path / "lab"), "-o", "0\x1e0=3"]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_refused_study_creates_no_lab_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.toml"
    path.write_text('run = "train"\naxes = [{grid = {"model.kind" = [false]}}]\n')
    argv = ["study", "run", str(path), "--lab", str(tmp_path / "lab"), "--executor", "serial"]
    assert main([*argv, "--no-progress", "--no-report"]) == 2
    assert not (tmp_path / "lab").exists()
