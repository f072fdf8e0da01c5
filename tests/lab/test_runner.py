"""The runner: every planned run ends in the store once; a re-run skips what is done; a study
killed with SIGKILL and run again finishes with no duplicated and no missing run or row."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from labkit import TINY_RUNS, TINY_TRAIN_RUNS, lab_command, run_cli, tiny_study

from resnorm.lab import load_study, plan, run_study, study_status
from resnorm.store import COMPLETE_STATUSES, Store


def _train_rows_are_complete(store: Store, run_id: str) -> None:
    """Every logged step exactly once: loss at 0..11, validation at 0, 4, 8, 12."""
    loss = [m.step for m in store.metrics(run_id, "loss")]
    val = [m.step for m in store.metrics(run_id, "val_loss")]
    assert loss == list(range(12)) and val == [0, 4, 8, 12]
    assert [d.step for d in store.diagnostics(run_id, "layer_drop")][:1] == [12]


def test_a_study_runs_every_run_once_and_a_rerun_skips_them_all(tmp_path: Path) -> None:
    _, spec = tiny_study(tmp_path)
    lab = tmp_path / "lab"
    first = run_study(spec, lab, executor="serial", progress=False)
    assert (first.ran, first.skipped) == (TINY_RUNS, 0)
    assert first.verdict == "reproduced", first.analysis["reason"]
    with Store(lab, readonly=True) as store:
        runs = store.runs(study="tiny")
        assert len(runs) == TINY_RUNS
        # 12 steps leave the tiny models above the corpus' unigram loss: stuck, and still probed
        assert {r.status for r in runs if "train" in r.config} == {"stuck"}
        assert {r.status for r in runs if "train" not in r.config} == {"done"}
        for r in runs:
            if "train" in r.config:
                _train_rows_are_complete(store, r.run_id)
        events = {r.run_id: len(store.events(r.run_id)) for r in runs}
    again = run_study(spec, lab, executor="serial", progress=False)
    assert (again.ran, again.skipped) == (0, TINY_RUNS)
    with Store(lab, readonly=True) as store:
        assert {r.run_id: len(store.events(r.run_id)) for r in store.runs()} == events
    manifest = json.loads((lab / "studies" / "tiny.json").read_text())
    assert manifest["analysis"]["verdict"] == "reproduced"
    assert study_status(lab)[0]["counts"] == {
        "done": TINY_RUNS - TINY_TRAIN_RUNS,
        "stuck": TINY_TRAIN_RUNS,
    }
    # the training runs' own stores were copied and removed; checkpoints stay
    assert not list((lab / "work").glob("*/resnorm.sqlite"))
    assert len(list((lab / "work").glob("*/runs/*/checkpoints/*.safetensors"))) == TINY_TRAIN_RUNS


def test_sigkill_of_the_driver_then_the_same_command_finishes_without_duplicates(
    tmp_path: Path,
) -> None:
    path, spec = tiny_study(tmp_path)
    lab = tmp_path / "lab"
    expected = {p.run_id for p in plan(spec, lab)}
    env = {**os.environ, "RESNORM_TEST_STEP_SLEEP": "0.15"}
    args = [
        "study",
        "run",
        str(path),
        "--lab",
        str(lab),
        "--workers",
        "2",
        "--no-progress",
        "--no-report",
    ]
    driver = subprocess.Popen(
        lab_command(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:  # wait until one training run is done, others not
            time.sleep(0.3)
            if not (lab / "resnorm.sqlite").exists():
                continue
            with Store(lab, readonly=True) as store:
                statuses = [r.status for r in store.runs() if "train" in r.config]
            finished = [s for s in statuses if s in COMPLETE_STATUSES]
            if finished and len(finished) < TINY_TRAIN_RUNS:
                break
        else:
            pytest.fail(f"the study never got going: {driver.stderr}")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    counts = study_status(lab)[0]["counts"]
    assert sum(counts.get(s, 0) for s in COMPLETE_STATUSES) < TINY_RUNS
    time.sleep(1.5)  # the orphaned workers notice their driver is gone and exit
    done = run_cli(args, env={"RESNORM_TEST_STEP_SLEEP": "0"})
    assert done.returncode == 0, done.stderr
    assert "tiny: reproduced" in done.stdout
    with Store(lab, readonly=True) as store:
        runs = store.runs()
        assert {r.run_id for r in runs} == expected and len(runs) == len(expected)
        assert {r.status for r in runs} <= COMPLETE_STATUSES
        for r in runs:
            if "train" in r.config:
                _train_rows_are_complete(store, r.run_id)
        reference = {r.run_id: r.summary for r in runs if "train" in r.config}
    # a resumed run ends with the numbers of an uninterrupted one
    clean = run_study(spec, tmp_path / "clean", executor="serial", progress=False, report=False)
    assert clean.ran == TINY_RUNS
    with Store(tmp_path / "clean", readonly=True) as store:
        for run_id, summary in reference.items():
            other = store.get_run(run_id)
            assert other is not None and other.summary is not None
            assert other.summary["val_loss"] == summary["val_loss"], run_id


def test_a_ray_cluster_on_localhost_runs_the_same_function_with_the_same_results(
    tmp_path: Path,
) -> None:
    path, _ = tiny_study(tmp_path)
    one_seed = path.read_text().replace("seeds = [0, 1]", "seeds = [0]")  # 6 runs
    path.write_text(one_seed.replace("min_seeds = 2", "min_seeds = 1"))
    spec = load_study(path)
    serial = run_study(
        spec, tmp_path / "serial", executor="serial", threads=1, progress=False, report=False
    )
    assert serial.ran == TINY_RUNS // 2
    ray = Path(sys.executable).parent / "ray"
    port = 6400 + os.getpid() % 500
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = [
        str(ray),
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--num-cpus=2",
        "--include-dashboard=false",
        "--disable-usage-stats",
        "--object-store-memory=80000000",
    ]
    started = subprocess.run(start, capture_output=True, text=True, env=env, timeout=300)
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        args = [
            "study",
            "run",
            str(path),
            "--lab",
            str(tmp_path / "ray"),
            "--executor",
            "ray",
            "--address",
            f"127.0.0.1:{port}",
            "--no-progress",
            "--no-report",
        ]
        out = run_cli(args, env=env, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "tiny: reproduced" in out.stdout
    finally:
        subprocess.run([str(ray), "stop", "--force"], capture_output=True, env=env, timeout=300)
    with (
        Store(tmp_path / "serial", readonly=True) as a,
        Store(tmp_path / "ray", readonly=True) as b,
    ):
        ra, rb = {r.run_id: r for r in a.runs()}, {r.run_id: r for r in b.runs()}
        assert ra.keys() == rb.keys() and len(ra) == TINY_RUNS // 2
        for run_id, r in ra.items():
            assert rb[run_id].status == r.status and r.status in COMPLETE_STATUSES
            assert rb[run_id].environment["pid"] != os.getpid()  # it ran in a Ray worker
            if "train" in r.config:  # the same numbers whichever executor ran it
                assert rb[run_id].summary["val_loss"] == r.summary["val_loss"]
            else:
                assert b.diagnostics(run_id) == a.diagnostics(run_id)


def test_bad_input_exits_2_naming_the_field_and_runs_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('run = "probe"\naxes = [ { grid = { "model.topology" = ["pre_lnn"] } } ]\n')
    out = run_cli(
        ["study", "run", str(bad), "--lab", str(tmp_path / "lab"), "--executor", "serial"]
    )
    assert out.returncode == 2
    assert "model.topology" in out.stderr and "Did you mean 'pre_ln'" in out.stderr
    assert not (tmp_path / "lab" / "resnorm.sqlite").exists()
    out = run_cli(["study", "run", "skipp", "--lab", str(tmp_path / "lab")])
    assert out.returncode == 2 and "Did you mean 'skip'" in out.stderr
