"""Tests of the results store: round trips, idempotence, concurrency, refusal of foreign files.

Every test uses a real SQLite database in a temporary folder; the concurrency test runs two real
writer processes.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from resnorm.errors import ConfigError
from resnorm.store import (
    DB_NAME,
    STATUSES,
    Diagnostic,
    DiagnosticRecord,
    Metric,
    Store,
    config_hash,
    load_results,
)

CONFIG = {"model": {"n_layers": 4, "topology": "pre_ln"}, "seed": 0, "lr": 1e-3}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "lab") as s:
        yield s


def _new_run(store: Store, config: dict = CONFIG, **kw: object) -> str:
    run_id = config_hash(config)
    store.upsert_run(run_id, config, **kw)  # type: ignore[arg-type]
    return run_id


# -- identity ---------------------------------------------------------------------------------


def test_config_hash_is_stable_across_key_order_and_distinct_for_different_configs() -> None:
    reordered = {"lr": 1e-3, "seed": 0, "model": {"topology": "pre_ln", "n_layers": 4}}
    assert config_hash(CONFIG) == config_hash(reordered)
    assert config_hash(CONFIG) != config_hash({**CONFIG, "seed": 1})
    assert config_hash({"a": [1, 2]}) != config_hash({"a": [2, 1]})
    # Golden value: sha256 of the canonical JSON (sorted keys, (",", ":") separators), 16 hex.
    expected = hashlib.sha256(b'{"a":1,"b":[1,2],"c":{"x":null,"y":"z"}}').hexdigest()[:16]
    assert config_hash({"c": {"y": "z", "x": None}, "b": (1, 2), "a": 1}) == expected
    assert len(expected) == 16


# -- opening ----------------------------------------------------------------------------------


def test_new_folder_creates_a_wal_store_with_marker(tmp_path: Path) -> None:
    with Store(tmp_path / "a" / "b") as s:
        assert s.path == tmp_path / "a" / "b" / DB_NAME
        assert s.folder == tmp_path / "a" / "b"
    conn = sqlite3.connect(tmp_path / "a" / "b" / DB_NAME)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert dict(conn.execute("SELECT key, value FROM meta"))["app"] == "resnorm"
    conn.close()
    with Store.open(tmp_path / "x.sqlite") as s:  # a file path is the database itself
        assert s.path == tmp_path / "x.sqlite"
    with Store(tmp_path / "a" / "b") as s:  # reopening an existing store works
        assert s.runs() == []


def test_text_file_is_refused_with_config_error_and_left_unchanged(tmp_path: Path) -> None:
    for target, opened in [
        (tmp_path / "notes.txt", tmp_path / "notes.txt"),
        (tmp_path / "lab" / DB_NAME, tmp_path / "lab"),  # a folder whose db file is text
    ]:
        target.parent.mkdir(exist_ok=True)
        target.write_text("hello, I am not a database\n")
        before = target.read_bytes()
        with pytest.raises(ConfigError) as info:
            Store(opened)
        assert info.value.field == "store"
        assert "text file" in str(info.value) and "not a resnorm store" in str(info.value)
        assert target.read_bytes() == before
        assert not Path(str(target) + "-wal").exists()


def test_foreign_sqlite_db_is_refused_with_config_error_and_left_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    for readonly in (False, True):
        with pytest.raises(ConfigError) as info:
            Store(db, readonly=readonly)
        assert info.value.field == "store"
        assert "SQLite database" in str(info.value) and "users" in str(info.value)
        assert "not a resnorm store" in str(info.value)
    assert db.read_bytes() == before


def test_readonly_open_of_missing_store_raises_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no resnorm store"):
        Store(tmp_path / "nothing", readonly=True)
    assert not (tmp_path / "nothing").exists()


def test_readonly_store_reads_while_a_writer_writes_and_refuses_writes(tmp_path: Path) -> None:
    with Store(tmp_path) as writer:
        run_id = _new_run(writer)
        with Store(tmp_path, readonly=True) as reader:
            writer.log_metrics(run_id, 1, {"loss": 2.0})
            assert reader.metrics(run_id) == [Metric(1, "loss", 2.0)]
            with pytest.raises(ConfigError, match="read-only"):
                reader.log_metrics(run_id, 2, {"loss": 1.0})


def test_store_pickles_by_path_and_reopens(store: Store) -> None:
    run_id = _new_run(store)
    clone = pickle.loads(pickle.dumps(store))
    try:
        assert clone.path == store.path
        assert clone.get_run(run_id) == store.get_run(run_id)
    finally:
        clone.close()


# -- runs -------------------------------------------------------------------------------------


def test_upsert_run_is_idempotent_and_never_overwrites_config(store: Store) -> None:
    run_id = config_hash(CONFIG)
    assert store.upsert_run(run_id, CONFIG, study="depth", environment={"torch": "2.4"}) is True
    assert store.upsert_run(run_id, {"something": "else"}, name="late name") is False
    run = store.get_run(run_id)
    assert run is not None
    assert run.config == CONFIG
    assert run.study == "depth" and run.name == "late name"  # missing fields are filled in
    assert run.environment == {"torch": "2.4"}
    assert run.status == "pending" and run.started_at is None and run.finished_at is None
    assert len(store.runs()) == 1
    assert store.get_run("no-such-run") is None


def test_status_transitions_set_timestamps_and_log_events(store: Store) -> None:
    run_id = _new_run(store)
    store.set_status(run_id, "running")
    first = store.get_run(run_id)
    assert first is not None and first.started_at is not None and first.finished_at is None
    store.set_status(run_id, "interrupted", "killed", step=40)
    stopped = store.get_run(run_id)
    assert stopped is not None and stopped.finished_at is not None
    assert stopped.detail == "killed"
    time.sleep(0.01)
    store.set_status(run_id, "running")
    resumed = store.get_run(run_id)
    assert resumed is not None and resumed.finished_at is None
    assert resumed.started_at is not None and resumed.started_at > first.started_at
    assert resumed.detail is None
    store.set_status(run_id, "diverged", "non-finite loss at step 812", {"loss": math.nan})
    done = store.get_run(run_id)
    assert done is not None and done.status == "diverged"
    assert done.detail == "non-finite loss at step 812"
    assert done.summary is not None and math.isnan(done.summary["loss"])
    assert done.duration is not None and done.duration >= 0
    store.set_status(run_id, "pending")  # re-queued: times cleared, summary kept
    again = store.get_run(run_id)
    assert again is not None and again.started_at is None and again.finished_at is None
    assert again.summary is not None
    statuses = [e.data["status"] for e in store.events(run_id, kind="status")]
    assert statuses == ["running", "interrupted", "running", "diverged", "pending"]
    assert store.events(run_id, kind="status")[1].step == 40


def test_invalid_status_and_unknown_run_raise_clear_errors(store: Store) -> None:
    run_id = _new_run(store)
    with pytest.raises(ConfigError) as info:
        store.set_status(run_id, "finished")
    assert info.value.field == "status" and "done" in str(info.value)
    with pytest.raises(KeyError):
        store.set_status("no-such-run", "running")
    with pytest.raises(KeyError):
        store.log_metrics("no-such-run", 0, {"loss": 1.0})
    with pytest.raises(KeyError):
        store.log_event("no-such-run", "note", "hi")


def test_runs_filter_by_study_and_status_and_status_counts(store: Store) -> None:
    a = _new_run(store, {"x": 1}, study="s1")
    b = _new_run(store, {"x": 2}, study="s1")
    _new_run(store, {"x": 3}, study="s2")
    store.set_status(a, "done")
    store.set_status(b, "failed", "boom")
    assert [r.run_id for r in store.runs(study="s1")] == [a, b]
    assert [r.run_id for r in store.runs(status="done")] == [a]
    assert {r.run_id for r in store.runs(study="s1", status=["done", "failed"])} == {a, b}
    counts = store.status_counts(study="s1")
    assert set(counts) == set(STATUSES)
    assert counts["done"] == 1 and counts["failed"] == 1 and counts["pending"] == 0
    assert sum(store.status_counts().values()) == 3


# -- metrics, diagnostics, events -------------------------------------------------------------


def test_metrics_round_trip_including_nan_and_inf(store: Store) -> None:
    run_id = _new_run(store)
    store.log_metrics(run_id, 0, {"loss": 3.5, "lr": 0.0})
    store.log_metrics_many(run_id, [(1, "loss", math.nan), (2, "loss", math.inf)])
    assert store.metrics(run_id, "lr") == [Metric(0, "lr", 0.0)]
    loss = store.metrics(run_id, "loss")
    assert [m.step for m in loss] == [0, 1, 2]
    assert loss[0].value == 3.5 and math.isnan(loss[1].value) and loss[2].value == math.inf
    assert len(store.metrics(run_id)) == 4


def test_relogging_same_run_step_name_replaces_instead_of_duplicating(store: Store) -> None:
    run_id = _new_run(store)
    for value in (1.0, 2.0, 3.0):
        store.log_metrics(run_id, 7, {"loss": value})
        store.log_diagnostics(run_id, 7, [{"probe": "rms", "layer": None, "value": value}])
    assert store.metrics(run_id) == [Metric(7, "loss", 3.0)]
    assert store.diagnostics(run_id) == [Diagnostic(7, "rms", None, None, 3.0, "")]


def test_diagnostics_round_trip_from_mappings_and_dataclasses(store: Store) -> None:
    run_id = _new_run(store)
    store.log_diagnostics(
        run_id,
        0,
        [
            {"probe": "grad_norm", "layer": 0, "sublayer": "attn", "value": 0.5, "unit": "l2"},
            {"probe": "grad_norm", "layer": 0, "key": "mlp", "value": 0.25, "unit": "l2"},
            DiagnosticRecord("rank_collapse", 0.9),
            DiagnosticRecord("residual_rms", 1.5, layer=3, key="attn", unit="rms"),
        ],
    )
    store.log_diagnostics(run_id, 10, [DiagnosticRecord("rank_collapse", math.nan)])
    got = store.diagnostics(run_id)
    assert got[:4] == [
        Diagnostic(0, "grad_norm", 0, "attn", 0.5, "l2"),
        Diagnostic(0, "grad_norm", 0, "mlp", 0.25, "l2"),
        Diagnostic(0, "rank_collapse", None, None, 0.9, ""),
        Diagnostic(0, "residual_rms", 3, "attn", 1.5, "rms"),
    ]
    assert math.isnan(got[4].value) and got[4].step == 10
    assert [d.step for d in store.diagnostics(run_id, probe="rank_collapse")] == [0, 10]


def test_a_failing_batch_writes_nothing(store: Store) -> None:
    run_id = _new_run(store)
    with pytest.raises(ValueError, match="probe"):
        store.log_diagnostics(run_id, 0, [DiagnosticRecord("ok", 1.0), {"value": 2.0}])
    assert store.diagnostics(run_id) == []
    with pytest.raises(KeyError):
        store.log_metrics_many("no-such-run", [(0, "loss", 1.0), (1, "loss", 2.0)])
    assert load_results(store, kind="metrics", as_frame=False) == []


def test_events_round_trip_in_logged_order(store: Store) -> None:
    run_id = _new_run(store)
    first = store.log_event(run_id, "resume", "resumed from step 100", step=100, data={"ckpt": 1})
    second = store.log_event(run_id, "note", "hello")
    assert second > first
    events = store.events(run_id)
    assert [(e.kind, e.message, e.step, e.data) for e in events] == [
        ("resume", "resumed from step 100", 100, {"ckpt": 1}),
        ("note", "hello", None, None),
    ]
    assert events[0].run_id == run_id and events[0].time <= events[1].time


def test_delete_metrics_after_drops_later_rows_for_a_resume(store: Store) -> None:
    run_id = _new_run(store)
    other = _new_run(store, {"other": True})
    store.log_metrics_many(run_id, [(s, "loss", float(s)) for s in range(10)])
    store.log_metrics_many(other, [(s, "loss", float(s)) for s in range(10)])
    store.log_diagnostics(run_id, 4, [DiagnosticRecord("rms", 1.0)])
    store.log_diagnostics(run_id, 8, [DiagnosticRecord("rms", 1.0)])
    store.log_event(run_id, "note", "kept", step=9)
    assert store.delete_metrics_after(run_id, 5) == 5  # steps 6..9 + the step-8 diagnostic
    assert [m.step for m in store.metrics(run_id)] == list(range(6))
    assert [d.step for d in store.diagnostics(run_id)] == [4]
    assert len(store.metrics(other)) == 10  # other runs untouched
    assert len(store.events(run_id)) == 1  # events are history
    store.log_metrics_many(run_id, [(s, "loss", float(s)) for s in range(5, 10)])  # re-log
    assert [m.step for m in store.metrics(run_id)] == list(range(10))


# -- load_results -----------------------------------------------------------------------------


def _fill(folder: Path) -> tuple[str, str]:
    with Store(folder) as s:
        a = _new_run(s, {"x": 1}, name="small", study="depth")
        b = _new_run(s, {"x": 2}, name="big", study="width")
        for run_id in (a, b):
            s.log_metrics(run_id, 1, {"loss": 1.0})
            s.log_diagnostics(run_id, 0, [DiagnosticRecord("rms", 2.0, layer=1, unit="rms")])
            s.log_event(run_id, "note", "hi")
        s.set_status(a, "done", summary={"loss": 1.0})
    return a, b


def test_load_results_as_records_joins_run_name_and_study(tmp_path: Path) -> None:
    a, _ = _fill(tmp_path)
    runs = load_results(tmp_path, kind="runs", as_frame=False)
    assert isinstance(runs, list) and len(runs) == 2
    assert runs[0]["run_id"] == a and runs[0]["config"] == {"x": 1}
    assert runs[0]["status"] == "done" and runs[0]["summary"] == {"loss": 1.0}
    metrics = load_results(tmp_path, study="depth", kind="metrics", as_frame=False)
    row = {"run_id": a, "run_name": "small", "study": "depth", "step": 1, "name": "loss"}
    assert metrics == [{**row, "value": 1.0}]
    diags = load_results(tmp_path, study="depth", kind="diagnostics", as_frame=False)
    assert diags[0]["layer"] == 1 and diags[0]["key"] is None and diags[0]["unit"] == "rms"
    events = load_results(tmp_path, study="depth", kind="events", as_frame=False)
    assert [e["kind"] for e in events] == ["note", "status"]
    with pytest.raises(ConfigError) as info:
        load_results(tmp_path, kind="metric", as_frame=False)
    assert info.value.field == "kind" and "metrics" in str(info.value)


def test_load_results_returns_a_dataframe_when_pandas_is_installed(tmp_path: Path) -> None:
    import pandas as pd  # a dev dependency (the report extra): always installed in CI

    _fill(tmp_path)
    frame = load_results(tmp_path, kind="metrics")
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["run_id", "run_name", "study", "step", "name", "value"]
    assert sorted(frame["run_name"]) == ["big", "small"]
    runs = load_results(tmp_path, study="width", as_frame=True)
    assert list(runs["status"]) == ["pending"]
    empty = load_results(tmp_path, study="none", kind="diagnostics", as_frame=True)
    assert empty.empty and "probe" in empty.columns


# -- concurrency ------------------------------------------------------------------------------

# A writer process: importing resnorm.store needs only the standard library (no torch).
_WRITER = r"""
import pathlib, sys, time
folder, sync, who, n = sys.argv[1:]
folder, sync, n = pathlib.Path(folder), pathlib.Path(sync), int(n)
from resnorm.store import Store
(sync / f"ready-{who}").touch()
while len(list(sync.glob("ready-*"))) < 2:
    time.sleep(0.001)
start = time.time()
with Store(folder) as store:  # both processes race to create the store
    store.upsert_run(f"run-{who}", {"who": who}, study="race")
    store.upsert_run("shared", {"shared": True}, study="race")
    for step in range(n):
        store.log_metrics(f"run-{who}", step, {"loss": step * 0.5})
        if step % 2 == 0:
            store.log_metrics("shared", step, {"x": float(step)})
        if step % 20 == 0:
            store.log_event(f"run-{who}", "tick", f"step {step}", step=step)
(sync / f"span-{who}").write_text(f"{start} {time.time()}")
"""


def test_two_processes_writing_concurrently_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    """Two real processes race to create one store, then commit ~3100 small transactions each.

    Both write their own run and the same rows of a shared run; afterwards every row is there
    exactly once.
    """
    n = 2000
    folder, sync = tmp_path / "lab", tmp_path / "sync"
    sync.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(folder), str(sync), who, str(n)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in ("a", "b")
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    spans = [[float(t) for t in (sync / f"span-{w}").read_text().split()] for w in "ab"]
    assert max(s[0] for s in spans) < min(s[1] for s in spans)  # they did write at one time
    with Store(folder, readonly=True) as s:
        for who in ("a", "b"):
            assert s.metrics(f"run-{who}") == [Metric(i, "loss", i * 0.5) for i in range(n)]
            assert [e.step for e in s.events(f"run-{who}")] == list(range(0, n, 20))
        assert s.metrics("shared") == [Metric(i, "x", float(i)) for i in range(0, n, 2)]
        assert s.status_counts(study="race")["pending"] == 3
        total = load_results(s, kind="metrics", as_frame=False)
        assert len(total) == 2 * n + n // 2


def test_a_write_waits_for_another_connections_lock_then_succeeds(tmp_path: Path) -> None:
    with Store(tmp_path, busy_timeout=5.0) as s:
        run_id = _new_run(s)
        blocker = sqlite3.connect(s.path, isolation_level=None, check_same_thread=False)
        blocker.execute("BEGIN IMMEDIATE")
        blocker.execute("INSERT INTO metrics VALUES (?, 0, 'held', 1.0)", (run_id,))
        release = threading.Timer(0.3, lambda: blocker.execute("COMMIT"))
        release.start()
        t0 = time.monotonic()
        s.log_metrics(run_id, 1, {"loss": 1.0})
        assert time.monotonic() - t0 >= 0.2
        release.join()
        blocker.close()
        assert [m.name for m in s.metrics(run_id)] == ["held", "loss"]
