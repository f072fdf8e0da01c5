"""Fuzzed checkpoint JSON: `load_file` (what resuming reads, validated before anything is
restored) raises nothing but ConfigError on a real checkpoint whose JSON was edited, replaced
or truncated, and leaves every file as it was."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from fuzz.fuzzkit import FUZZ, deep, guarded, junk_key, values
from resnorm.errors import ConfigError
from resnorm.train.checkpoint import load_file, save

FIELDS = ["format", "run_id", "step", "tensors", "sha256", "python_rng", "last", "world_size"]
FIELDS += ["config"]


@st.composite
def edits(draw: st.DrawFn) -> list[tuple[str, str, Any]]:
    """(field, how, value): delete a field, replace it, or poke into python_rng."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.one_of(st.sampled_from(FIELDS), junk_key))
        how = draw(st.sampled_from(["delete", "replace", "replace", "rng"]))
        out.append((key, how, draw(values)))
    return out


# Not JSON nested past the interpreter's stack: a known bug, pinned by
# test_deeply_nested_checkpoint_json_is_a_config_error below.
raw = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"", b"{", b"null", b"[]", b"1e999", b"[" * 500 + b"]" * 500, b"\xff{}"]),
)


@FUZZ.__class__(FUZZ, max_examples=250)
@given(changes=edits(), replacement=st.one_of(st.none(), st.none(), raw), cut=st.integers(0, 9))
def test_edited_checkpoint_json_is_refused_cleanly(
    changes: list[tuple[str, str, Any]], replacement: bytes | None, cut: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = save(folder, 10, {"w": torch.zeros(3)}, {"run_id": "r1", "last": {"loss": 1.0}})
        meta = json.loads(path.read_text())
        for key, how, value in changes:
            if how == "delete":
                meta.pop(key, None)
            elif how == "replace":
                meta[key] = value
            elif isinstance(meta.get("python_rng"), list) and meta["python_rng"]:
                meta["python_rng"][hash(key) % len(meta["python_rng"])] = value
        try:
            text = json.dumps(meta).encode("utf-8", "surrogatepass")
        except RecursionError:
            text = json.dumps(deep(500)).encode()
        if cut == 0:
            text = text[: len(text) // 2]  # a torn write
        path.write_bytes(text if replacement is None else replacement)
        guarded(folder, lambda: load_file(path, "r1"))


def test_deeply_nested_checkpoint_json_is_a_config_error(tmp_path: Path) -> None:
    path = save(tmp_path, 10, {"w": torch.zeros(3)}, {"run_id": "r1"})
    path.write_bytes(b"[" * 100_000)
    with pytest.raises(ConfigError):
        load_file(path, "r1")
