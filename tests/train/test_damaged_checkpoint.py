"""A tampered or damaged checkpoint never costs data (issue 12, item 1).

Each reproducer edits the newest checkpoint of an interrupted run. With no earlier good
checkpoint, ``resnorm train`` refuses in one line with exit 2 and every file and store row is
unchanged; with one, the damaged checkpoint is moved aside (bytes kept) and the run resumes from
the good one, saying so in a message and an event.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from trainkit import TINY_TOML, assert_same_results, results, snapshot

from resnorm.store import Store
from resnorm.train.checkpoint import checkpoint_dir
from resnorm.train.cli import main
from resnorm.train.session import Session


class _Killed(Exception):
    """Stands in for a SIGKILL after the step-8 checkpoint (the rows after it stay logged)."""


def _args(toml: Path, lab: Path) -> list[str]:
    return ["--config", str(toml), "--lab", str(lab), "--no-progress"]


@pytest.fixture
def killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """(config, lab, checkpoints folder) of a run killed after its step-8 checkpoint, with the
    step-4 checkpoint kept beside it (save keeps only the newest; the copy is put back)."""
    toml, lab, held = tmp_path / "tiny.toml", tmp_path / "lab", tmp_path / "held"
    toml.write_text(TINY_TOML)
    original = Session.checkpoint

    def checkpoint(self: Session, step: int, model: Any, optimizer: Any) -> None:
        original(self, step, model, optimizer)
        if step == 4:
            shutil.copytree(self.folder, held)
        if step == 8:
            raise _Killed

    monkeypatch.setattr(Session, "checkpoint", checkpoint)
    with pytest.raises(_Killed):
        main(_args(toml, lab))
    monkeypatch.undo()
    (run_dir,) = (lab / "runs").iterdir()
    folder = checkpoint_dir(lab, run_dir.name)
    for p in held.iterdir():
        shutil.copy2(p, folder / p.name)
    return toml, lab, folder


def _edit_json(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = folder / "step-00000008.json"
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


def _edit_tensors(folder: Path, change: Callable[[dict[str, torch.Tensor]], None]) -> None:
    """Rewrite the step-8 tensors and their sha256, so that only the content is wrong."""
    path = folder / "step-00000008.safetensors"
    tensors = dict(load_safetensors(path.read_bytes()))
    change(tensors)
    blob = save_safetensors(tensors)
    path.write_bytes(blob)
    _edit_json(folder, lambda m: m.update(sha256=hashlib.sha256(blob).hexdigest()))


def _flip_byte(folder: Path) -> None:
    path = folder / "step-00000008.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))


def _drop_exp_avg_sq(t: dict[str, torch.Tensor]) -> None:
    del t[next(k for k in t if k.endswith(".exp_avg_sq"))]


TAMPERINGS: dict[str, Callable[[Path], None]] = {
    "step_negative": lambda f: _edit_json(f, lambda m: m.update(step=-5)),
    "step_fractional": lambda f: _edit_json(f, lambda m: m.update(step=7.9)),
    "python_rng_bad": lambda f: _edit_json(f, lambda m: m.update(python_rng=[3, [1, 2], None])),
    "python_rng_string": lambda f: _edit_json(f, lambda m: m.update(python_rng="abc")),
    "last_bad": lambda f: _edit_json(f, lambda m: m.update(last=["loss", 1])),
    "last_string_value": lambda f: _edit_json(f, lambda m: m.update(last={"loss": "x"})),
    "rng_tensor_dtype": lambda f: _edit_tensors(
        f, lambda t: t.update({"rng.torch": t["rng.torch"].float()})
    ),
    "missing_exp_avg_sq": lambda f: _edit_tensors(f, _drop_exp_avg_sq),
    "foreign_tensor": lambda f: _edit_tensors(
        f, lambda t: t.update({"optim.bogus.step": torch.tensor(1.0)})
    ),
    "negative_step_count": lambda f: _edit_tensors(
        f, lambda t: t.update({k: -t[k] for k in t if k.endswith(".step")})
    ),
    "flipped_byte": _flip_byte,
    "tensors_path_escape": lambda f: _edit_json(f, lambda m: m.update(tensors="../../x")),
    "not_a_json_object": lambda f: (f / "step-00000008.json").write_text("[1, 2]"),
}


def _rows(lab: Path) -> dict[str, Any]:
    with Store(lab) as store:
        (record,) = store.runs()
        return {
            "run": (record.status, record.detail),
            "metrics": [(m.step, m.name, m.value) for m in store.metrics(record.run_id)],
            "diagnostics": list(store.diagnostics(record.run_id)),
            "events": [(e.kind, e.message) for e in store.events(record.run_id)],
        }


@pytest.mark.parametrize("tamper", TAMPERINGS)
def test_damaged_checkpoint_without_a_good_one_refuses_and_changes_nothing(
    killed: tuple[Path, Path, Path], tamper: str, capsys: pytest.CaptureFixture[str]
) -> None:
    toml, lab, folder = killed
    for p in folder.glob("step-00000004.*"):
        p.unlink()
    TAMPERINGS[tamper](folder)
    files, rows = snapshot(lab / "runs"), _rows(lab)
    capsys.readouterr()
    assert main(_args(toml, lab)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "checkpoint" in err and "step-00000008" in err and "Traceback" not in err
    assert snapshot(lab / "runs") == files
    assert _rows(lab) == rows


@pytest.mark.parametrize("tamper", TAMPERINGS)
def test_damaged_checkpoint_is_moved_aside_and_the_run_resumes_from_the_previous_good_one(
    killed: tuple[Path, Path, Path], tamper: str, capsys: pytest.CaptureFixture[str]
) -> None:
    toml, lab, folder = killed
    TAMPERINGS[tamper](folder)
    damaged = {p.name: p.read_bytes() for p in folder.glob("step-00000008.*")}
    capsys.readouterr()
    assert main(_args(toml, lab)) == 0
    out = capsys.readouterr()
    assert "step-00000008" in out.err and "moved aside" in out.err
    assert {p: (folder / f"damaged-{p}").read_bytes() for p in damaged} == damaged
    rows = _rows(lab)
    assert rows["run"][0] in {"done", "stuck"}  # finished (12 tiny steps learn little)
    kinds = [k for k, _ in rows["events"]]
    assert "checkpoint_damaged" in kinds
    assert any(k == "resume" and "step 4" in m for k, m in rows["events"])


def test_resumed_from_the_previous_good_checkpoint_equals_an_uninterrupted_run(
    killed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    toml, lab, folder = killed
    _flip_byte(folder)
    assert main(_args(toml, lab)) == 0
    reference = tmp_path / "reference"
    assert main(_args(toml, reference)) == 0
    assert_same_results(results(lab), results(reference))
