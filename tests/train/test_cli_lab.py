"""`resnorm train` checks its lab at the boundary, wherever the lab came from (--lab, -o lab=,
the TOML's `lab`), and the run's own folders in it: one line, exit 2, nothing written (issue 12,
item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnorm.cli import main
from resnorm.config import load_config
from resnorm.train import cli as train_cli

OVERRIDES = ["train.steps=1"]


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (``None`` for a folder)."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


@pytest.mark.parametrize("top", ["runs", "work"])
def test_a_file_where_the_run_folder_goes_is_a_one_line_exit_2(
    top: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = tmp_path / "lab"
    run_id = load_config(None, [*OVERRIDES, f"lab={lab}"]).run_id
    (lab / top).mkdir(parents=True)
    (lab / top / run_id).write_bytes(b"not a folder")
    before = _snapshot(tmp_path)
    argv = ["train", "--lab", str(lab), "--no-progress", *(f"-o{o}" for o in OVERRIDES)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert f"--lab: {lab / top / run_id} is a file where the lab keeps a folder" in err
    assert _snapshot(tmp_path) == before, "nothing is written: no store, no run folder"


def test_a_database_file_name_as_the_toml_lab_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "run.toml"
    config.write_text('lab = "x.sqlite"\n[train]\nsteps = 1\n')
    before = _snapshot(tmp_path)
    assert main(["train", "--config", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert "resnorm train: error: lab: x.sqlite names a database file" in err
    assert _snapshot(tmp_path) == before


def test_the_train_module_entry_checks_an_override_lab_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # python -m resnorm.train.cli (and torchrun -m resnorm train) skip resnorm.cli.main's check.
    (tmp_path / "lab").write_text("a file")
    before = _snapshot(tmp_path)
    argv = ["--no-progress", "-o", f"lab={tmp_path / 'lab'}", "-o", "train.steps=1"]
    assert train_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("resnorm train: error: lab: ") and "is a file" in err, err
    assert len(err.splitlines()) == 1
    assert _snapshot(tmp_path) == before
