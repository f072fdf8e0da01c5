"""Fuzzed study specs (dicts and TOML files): `study_from_dict` and `plan` raise nothing but
ConfigError, and ``resnorm study run`` refuses what they refuse with one line, exit 1 or 2,
and no file changed (no manifest, no store, nothing outside the lab)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given

from fuzz.fuzzkit import FUZZ, cli_refuses, guarded, study_tree, toml_text
from resnorm.lab import plan, study_from_dict


def _plan(tree: dict[str, Any], lab: Path) -> None:
    spec = study_from_dict(tree)
    # A study whose grid is absurdly large is refused elsewhere; planning it here would only
    # measure the machine.
    plan(spec, lab)


@FUZZ.__class__(FUZZ, max_examples=500)
@given(tree=study_tree())
def test_study_dict_raises_only_config_errors(tree: dict[str, Any], monkeypatch: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        monkeypatch.chdir(folder)
        guarded(folder, lambda: _plan(tree, folder / "lab"))


@FUZZ.__class__(FUZZ, max_examples=200)
@given(tree=study_tree())
def test_study_file_refused_cleanly_by_cli(
    tree: dict[str, Any], capsys: Any, monkeypatch: Any
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        monkeypatch.chdir(folder)
        # An existing lab (the usual case): `run_studies` makes the lab folder before it plans
        # (lab/runner.py), so a refused study in a fresh folder leaves an empty lab behind; see
        # test_refused_study_creates_no_lab_folder.
        (folder / "lab").mkdir()
        path = folder / "fuzzed.toml"
        path.write_bytes(toml_text(tree).encode("utf-8", "surrogatepass"))
        from resnorm.lab import load_study

        if guarded(folder, lambda: plan(load_study(path), folder / "lab")):
            return  # valid: running it would train
        argv = ["study", "run", str(path), "--lab", str(folder / "lab"), "--executor", "serial"]
        cli_refuses(folder, capsys, [*argv, "--no-progress", "--no-report"])
