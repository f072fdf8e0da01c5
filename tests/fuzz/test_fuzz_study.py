"""Fuzzed study specs (dicts and TOML files): `study_from_dict` and `plan` raise nothing but
ConfigError, and ``resnorm study run`` refuses what they refuse with one line, exit 1 or 2,
and no file changed (no manifest, no store, nothing outside the lab)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from fuzz.fuzzkit import FUZZ, alarm, cli_refuses, guarded, override, toml_text
from fuzz.studykit import study_tree
from resnorm.errors import ConfigError
from resnorm.lab import plan, study_from_dict
from resnorm.lab.overrides import apply_overrides, parse_overrides, parse_seeds
from resnorm.studies import get_study

SKIP = get_study("skip", "quick")


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
@given(tree=study_tree(), existing_lab=st.booleans())
def test_study_file_refused_cleanly_by_cli(
    tree: dict[str, Any], existing_lab: bool, capsys: Any, monkeypatch: Any
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        monkeypatch.chdir(folder)
        if existing_lab:  # else a refused study must not even create the lab folder
            (folder / "lab").mkdir()
        path = folder / "fuzzed.toml"
        path.write_bytes(toml_text(tree).encode("utf-8", "surrogatepass"))
        from resnorm.lab import load_study

        if guarded(folder, lambda: plan(load_study(path), folder / "lab")):
            return  # valid: running it would train
        argv = ["study", "run", str(path), "--lab", str(folder / "lab"), "--executor", "serial"]
        cli_refuses(folder, capsys, [*argv, "--no-progress", "--no-report"])


SEED_TEXT = st.one_of(
    st.none(),
    st.sampled_from(["0", "0-2", "3-5,8", "0,1,5", "5-3", "-1", "", "a", "0-", "1e3", "0x10"]),
    st.text(alphabet="0123456789,- x", max_size=8),
)


@FUZZ.__class__(FUZZ, max_examples=120)
@given(seeds=SEED_TEXT, overrides=st.lists(override(), max_size=3))
def test_study_overrides_and_seeds_refused_cleanly(
    seeds: str | None, overrides: list[str], capsys: Any, monkeypatch: Any
) -> None:
    # Ranges past a few thousand seeds hang parse_seeds (lab/overrides.py): see
    # test_a_huge_seed_range_is_refused_not_expanded.
    assume(seeds is None or not any(len(n) > 4 for n in re.findall(r"\d+", seeds)))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        monkeypatch.chdir(folder)
        (folder / "lab").mkdir()

        def build() -> None:
            picked = parse_seeds(seeds) if seeds is not None else None
            plan(apply_overrides(SKIP, picked, parse_overrides(overrides)), folder / "lab")

        if guarded(folder, build):
            return  # valid: running it would train
        argv = ["study", "run", "skip", "--lab", str(folder / "lab"), "--executor", "serial"]
        argv += [f"--override={o}" for o in overrides]
        argv += [f"--seeds={seeds}"] if seeds is not None else []
        cli_refuses(folder, capsys, [*argv, "--no-progress", "--no-report"])


def test_a_huge_seed_range_is_refused_not_expanded() -> None:
    with alarm(3), pytest.raises(ConfigError):
        parse_seeds("0-99999999999")
