"""Fuzzed run configs (dicts, TOML files, ``-o`` overrides): the library raises nothing but
ConfigError, and ``resnorm train`` refuses what the library refuses with one line, exit 2, and
no file changed."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fuzz.fuzzkit import FUZZ, cli_refuses, guarded, override, run_tree, toml_junk, toml_text
from resnorm.config import RunConfig, load_config


@FUZZ.__class__(FUZZ, max_examples=400)
@given(tree=run_tree())
def test_run_config_from_dict_raises_only_config_errors(tree: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        guarded(Path(tmp), lambda: RunConfig.from_dict(tree))


def _write(folder: Path, text: str) -> Path:
    path = folder / "run.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))  # lone surrogates: invalid UTF-8
    return path


@FUZZ.__class__(FUZZ, max_examples=300)
@given(
    text=st.one_of(run_tree().map(toml_text), toml_junk),
    overrides=st.lists(override(), max_size=3),
)
def test_toml_and_overrides_refused_cleanly_by_library_and_cli(
    text: str, overrides: list[str], capsys: Any, monkeypatch: Any
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        monkeypatch.chdir(folder)  # a relative `lab` lands here, where it is watched
        path = _write(folder, text)
        if guarded(folder, lambda: load_config(path, overrides)):
            return  # valid: `resnorm train` would train it, which is not this test's job
        argv = ["train", "-c", str(path), "--lab", str(folder / "lab"), "--no-progress"]
        cli_refuses(folder, capsys, [*argv, *(a for o in overrides for a in ("-o", o))])
