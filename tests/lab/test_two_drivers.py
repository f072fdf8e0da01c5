"""Two study drivers on one lab: each run is run by one of them, recorded once, and no run's
event log gets a spurious ``error`` (issue 12, item 16);
an interrupted driver keeps the manifest's previous verdict (item 4)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from labkit import TINY_RUNS, lab_command, tiny_study

from resnorm.lab import plan, run_study
from resnorm.lab.executors import Executor, Output, Started, Task
from resnorm.lab.manifest import read_manifest, write_manifest
from resnorm.store import COMPLETE_STATUSES, Store


def test_two_drivers_on_one_lab_leave_no_error_events_and_no_duplicates(tmp_path: Path) -> None:
    path, spec = tiny_study(tmp_path)
    lab = tmp_path / "lab"
    args = ["study", "run", str(path), "--lab", str(lab), "--workers", "1"]
    drivers = [
        subprocess.Popen(
            lab_command(*args, "--no-progress", "--no-report"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for d in drivers:
        out, err = d.communicate(timeout=240)
        assert d.returncode == 0, err
        assert "tiny: reproduced" in out
    with Store(lab, readonly=True) as store:
        runs = store.runs()
        assert len(runs) == TINY_RUNS == len({r.run_id for r in runs})
        assert {r.run_id for r in runs} == {p.run_id for p in plan(spec, lab)}
        assert {r.status for r in runs} <= COMPLETE_STATUSES
        for r in runs:
            events = store.events(r.run_id)
            assert not [e.message for e in events if e.kind == "error"], r.name
            keys = [(e.kind, e.message, e.step) for e in events if e.kind != "status"]
            assert len(keys) == len(set(keys)), r.name
            steps = [(m.name, m.step) for m in store.metrics(r.run_id)]
            assert len(steps) == len(set(steps)), r.name


class _Interrupted(Executor):
    """An executor interrupted before its first run ends (Ctrl-C during the study)."""

    name = "interrupted"

    def imap(self, tasks: Iterable[Task], started: Started) -> Iterator[Output]:
        raise KeyboardInterrupt
        yield  # a generator, like the real executors


def test_an_interrupted_study_keeps_the_manifests_previous_analysis(tmp_path: Path) -> None:
    _, spec = tiny_study(tmp_path)
    lab = tmp_path / "lab"
    previous = {"verdict": "reproduced", "reason": "an earlier run"}
    write_manifest(lab, {"spec": spec.to_dict(), "runs": [], "analysis": previous})
    with pytest.raises(KeyboardInterrupt):
        run_study(spec, lab, executor=_Interrupted(1), progress=False, report=False)
    manifest = read_manifest(lab, "tiny")
    assert manifest is not None and manifest["analysis"] == previous
