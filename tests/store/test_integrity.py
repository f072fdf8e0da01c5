"""A damaged store (issue 12, item 4): every command says so in one line naming the file, exits
1, and leaves every file of the lab byte-identical; ``resnorm doctor --lab`` reports the state."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import sys
from pathlib import Path

import pytest

from resnorm.cli import main
from resnorm.store import Store, config_hash
from resnorm.store.integrity import StoreError, check_store, store_health

sys.path.insert(0, str(Path(__file__).parents[1] / "lab"))
from labkit import tiny_study


def _make_store(lab: Path) -> Path:
    with Store(lab) as store:
        for i in range(40):
            cfg = {"i": i, "pad": "x" * 500}
            run_id = config_hash(cfg)
            store.upsert_run(run_id, cfg, name=f"r{i}", study="s")
            store.log_metrics_many(run_id, [(k, "loss", 1.0 / (k + 1)) for k in range(50)])
            store.log_event(run_id, "note", "hello")
    return lab / "resnorm.sqlite"


def _damage(db: Path, kind: str) -> None:
    if kind == "flipped page":
        data = bytearray(db.read_bytes())
        for offset in range(4096 * 5, 4096 * 5 + 64):  # page 6's b-tree header
            data[offset] ^= 0xFF
        db.write_bytes(bytes(data))
        return
    statement = {
        "missing table": "DROP TABLE events",
        "invalid JSON": "UPDATE runs SET config = '{not json' WHERE name = 'r3'",
        "non-UTF-8 text": "UPDATE runs SET name = CAST(X'FFFE41' AS TEXT) WHERE name = 'r3'",
    }[kind]
    conn = sqlite3.connect(db)
    conn.execute(statement)
    conn.commit()
    conn.close()


def _hashes(lab: Path) -> dict[str, str]:
    return {
        str(p.relative_to(lab)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(lab.rglob("*"))
        if p.is_file()
    }


DAMAGE = ["flipped page", "missing table", "invalid JSON", "non-UTF-8 text"]
COMMANDS = [
    ["runs", "list"],
    ["report"],
    ["train", "-o", "model.n_layers=1", "-o", "train.steps=2", "--no-progress"],
]


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_store_is_one_line_exit_1_and_no_file_changes(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = tmp_path / "lab"
    db = _make_store(lab)
    _damage(db, kind)
    before = _hashes(lab)
    for command in COMMANDS:
        assert main([*command, "--lab", str(lab)]) == 1, command
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert f"{db} is damaged" in err, err
        after = _hashes(lab)
        assert {k: after[k] for k in before} == before, command
    assert main(["doctor", "--lab", str(lab)]) == 1
    out = capsys.readouterr().out
    assert "state:          damaged" in out, out
    assert {k: v for k, v in _hashes(lab).items() if k in before} == before


def test_doctor_reports_an_intact_store_and_its_schema_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _make_store(tmp_path)
    assert main(["doctor", "--lab", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (
        "state:          ok" in out and "schema version: 1" in out and "runs:           40" in out
    )
    assert store_health(tmp_path / "empty")["state"] == "missing"


def test_the_full_check_runs_only_when_the_file_changed_since_last_seen(tmp_path: Path) -> None:
    db = _make_store(tmp_path)
    check_store(db)  # stamped by the store's clean close: quick
    data = bytearray(db.read_bytes())
    stat = db.stat()
    for offset in range(4096 * 5, 4096 * 5 + 64):
        data[offset] ^= 0xFF
    db.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="damaged"):
        check_store(db)
    with pytest.raises(StoreError):
        Store(tmp_path)
    assert stat.st_size == db.stat().st_size


def test_study_run_on_a_damaged_store_keeps_the_manifest_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, spec = tiny_study(tmp_path)
    lab = tmp_path / "lab"
    _damage(_make_store(lab), "flipped page")
    manifest = lab / "studies" / "tiny.json"
    manifest.parent.mkdir()
    analysis = {"verdict": "reproduced", "reason": "an earlier run"}
    manifest.write_text(json.dumps({"spec": spec.to_dict(), "runs": [], "analysis": analysis}))
    before = _hashes(lab)
    argv = ["study", "run", str(path), "--lab", str(lab), "--no-progress", "--no-report"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is damaged" in err, err
    after = _hashes(lab)
    assert {k: after[k] for k in before} == before
    assert json.loads(manifest.read_text())["analysis"] == analysis
