"""`resnorm train` on bad input: exit status 2, one line naming the field, no traceback, and
not a byte of the lab folder changed."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from trainkit import run_cli, snapshot, tiny_config

from resnorm.store import Store
from resnorm.train import train
from resnorm.train.checkpoint import checkpoint_dir
from resnorm.train.cli import main


def _lab_files(lab: Path) -> dict[str, bytes]:
    """The lab's files, SQLite's transient -wal/-shm aside (opening a store may create them)."""
    return {k: v for k, v in snapshot(lab).items() if not k.endswith(("-wal", "-shm"))}


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str], field: str, *words: str) -> str:
    assert main([*argv, "--no-progress"]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("resnorm train: error: ") and err.count("\n") == 1, err
    assert f"{field}:" in err and "Traceback" not in err
    for word in words:
        assert word in err, err
    return err


BAD_CONFIGS = [
    (["model.n_layer=3"], "model.n_layer", ["unknown key", "'n_layers'"]),
    (["train.lr=fast"], "train.lr", ["expected a number"]),
    (["train.schedul='cosine'"], "train.schedul", ["'schedule'"]),
    (["data.source=text", "data.path=/no/such/corpus", "data.params={}"], "data.path", ["no such"]),
    (["data.params={vocab_size=64}"], "model.vocab_size", ["64"]),
    (["data.batch_size=6", "train.grad_accum=4"], "train.grad_accum", ["6"]),
    (["nonsense"], "override", ["key=value"]),
]
if not torch.cuda.is_available():
    BAD_CONFIGS.append((["train.device=cuda"], "train.device", ["CUDA is not available"]))


@pytest.mark.parametrize(("overrides", "field", "words"), BAD_CONFIGS)
def test_bad_config_exits_2_naming_the_field_and_writes_nothing(
    tmp_path: Path,
    tiny_toml: Path,
    capsys: pytest.CaptureFixture[str],
    overrides: list[str],
    field: str,
    words: list[str],
) -> None:
    lab = tmp_path / "lab"
    argv = ["--config", str(tiny_toml), "--lab", str(lab)]
    _fails(capsys, [*argv, *(a for o in overrides for a in ("-o", o))], field, *words)
    assert not lab.exists()


def test_malformed_toml_exits_2_with_its_line_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nd_model = 16\nn_layers = = 2\n")
    done = run_cli(bad, tmp_path / "lab")  # the real entry point, in a subprocess
    assert done.returncode == 2
    assert "config:" in done.stderr and "line 3" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "lab").exists()


def _interrupted_run(lab: Path) -> tuple[str, Path]:
    """A run with checkpoints whose store row says it did not finish (as after a kill)."""
    cfg = tiny_config(lab, ["train.probe_every=0"])
    result = train(cfg, progress=False)
    with Store(lab) as store:
        store.set_status(result.run_id, "interrupted")
    return result.run_id, checkpoint_dir(lab, result.run_id)


def _argv(lab: Path, tiny_toml: Path, *overrides: str) -> list[str]:
    argv = ["--config", str(tiny_toml), "--lab", str(lab), "-o", "train.probe_every=0"]
    return argv + [a for o in overrides for a in ("-o", o)]


def test_truncated_checkpoint_exits_2_and_is_left_alone(
    tmp_path: Path, tiny_toml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = tmp_path / "lab"
    _, folder = _interrupted_run(lab)
    tensors = folder / "step-00000012.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:100])
    before = _lab_files(lab)
    _fails(capsys, _argv(lab, tiny_toml), "checkpoint", "truncated")
    assert _lab_files(lab) == before


def test_checkpoint_of_another_run_exits_2(
    tmp_path: Path, tiny_toml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = tmp_path / "lab"
    _, folder = _interrupted_run(lab)
    other = checkpoint_dir(lab, tiny_config(lab, ["train.probe_every=0", "train.lr=0.5"]).run_id)
    shutil.copytree(folder, other)
    before = _lab_files(lab)
    _fails(capsys, _argv(lab, tiny_toml, "train.lr=0.5"), "checkpoint", "belongs to run")
    assert _lab_files(lab) == before


def test_checkpoint_missing_a_tensor_exits_2(
    tmp_path: Path, tiny_toml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = tmp_path / "lab"
    _, folder = _interrupted_run(lab)
    tensors, meta_path = folder / "step-00000012.safetensors", folder / "step-00000012.json"
    state = load_file(tensors)
    del state["model.embed.tok.weight"]
    save_file(state, tensors)
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = hashlib.sha256(tensors.read_bytes()).hexdigest()
    meta_path.write_text(json.dumps(meta))
    before = _lab_files(lab)
    _fails(capsys, _argv(lab, tiny_toml), "checkpoint", "embed.tok.weight")
    assert _lab_files(lab) == before


@pytest.mark.parametrize("content", [b"not a database at all", "sqlite"])
def test_lab_whose_database_is_not_a_resnorm_store_exits_2(
    tmp_path: Path, tiny_toml: Path, capsys: pytest.CaptureFixture[str], content: object
) -> None:
    lab = tmp_path / "lab"
    lab.mkdir()
    db = lab / "resnorm.sqlite"
    if content == "sqlite":  # a real SQLite database of some other program
        import sqlite3

        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE people (name TEXT)")
        conn.close()
    else:
        db.write_bytes(content)  # type: ignore[arg-type]
    before = snapshot(lab)
    _fails(capsys, ["--config", str(tiny_toml), "--lab", str(lab)], "store")
    assert snapshot(lab) == before
