"""Awkward lab paths (issue 12, item 6): a file, a database file name, a folder that cannot be
made, a lab subfolder or run folder that is a file: one line naming it, exit 2, nothing created
and every existing file byte-identical."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from resnorm.cli import main
from resnorm.errors import ConfigError

sys.path.insert(0, str(Path(__file__).parents[1] / "lab"))
from labkit import tiny_study

TRAIN = ["train", "-o", "model.n_layers=1", "-o", "train.steps=2", "--no-progress"]


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        for p in sorted(root.rglob("*"))
    }


def _refused(argv: list[str], root: Path, capsys: pytest.CaptureFixture[str]) -> str:
    before = _hashes(root)
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert _hashes(root) == before, argv
    return err


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a lab")
    (tmp_path / "lab" / "report").parent.mkdir()
    (tmp_path / "lab" / "report").write_text("not a folder")
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        ([*TRAIN, "--lab", "new.sqlite"], "new.sqlite names a database file"),
        ([*TRAIN, "-o", "lab=/proc/x"], "cannot create the lab folder /proc/x"),
        ([*TRAIN, "--lab", "afile"], "afile is a file"),
        ([*TRAIN, "--lab", "afile/sub"], "afile is a file"),
        (["runs", "list", "--lab", "afile"], "afile is a file"),
        (["study", "status", "--lab", "afile"], "afile is a file"),
        (["report", "--lab", "lab"], "report is a file"),
        ([*TRAIN, "--lab", "lab"], "report is a file"),
    ],
)
def test_an_awkward_lab_path_is_one_line_exit_2_and_changes_nothing(
    root: Path, argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert named in _refused(argv, root, capsys)


def test_a_run_folder_that_is_a_file_stops_a_study_before_it_writes(tmp_path: Path) -> None:
    from resnorm.lab import plan, run_study

    _, spec = tiny_study(tmp_path)
    lab = tmp_path / "lab"
    run_id = plan(spec, lab)[-1].run_id
    (lab / "work").mkdir(parents=True)
    (lab / "work" / run_id).write_text("in the way")
    before = _hashes(tmp_path)
    with pytest.raises(ConfigError, match=f"work/{run_id} is a file"):
        run_study(spec, lab, executor="serial", progress=False, report=False)
    assert _hashes(tmp_path) == before
