"""Run studies: expand axes -> resolved configs -> run ids -> skip what is done -> run the rest.

`run_studies(specs, lab)` is the driver. It is the only writer of the lab's store: workers
return their rows (`resnorm.lab.tasks.execute`) and the driver copies them in as they arrive,
each run ending with its final status, so a run is either complete in the store or run again.
A run's identity is the hash of its resolved config: the same study run again skips every
complete run (``done``, ``diverged``, ``stuck``) and resumes the rest (an interrupted training
run from its newest checkpoint). Runs shared by two studies are run once.

Beside the store, each study has a manifest (`resnorm.lab.manifest`): the spec, its planned
runs and the latest analysis, which `study_status` and the report read.
"""

from __future__ import annotations

import copy
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnorm.errors import ConfigError
from resnorm.lab.claims import Claims
from resnorm.lab.executors import Executor, make_executor
from resnorm.lab.manifest import manifests, read_manifest, write_manifest
from resnorm.lab.spec import TAGS, StudySpec
from resnorm.lab.tasks import Output, private_lab, resolve, seed_fields
from resnorm.lab.verdicts import check, quantities, run_scalars, summary, verdict
from resnorm.store import COMPLETE_STATUSES, DB_NAME, STATUSES, Store
from resnorm.store.labpath import check_lab
from resnorm.store.records import Diagnostic


@dataclass(frozen=True)
class PlannedRun:
    """One run of a study: where it sits (part, point, seed) and what it is (id, config)."""

    run_id: str
    part: str
    run: str
    point: dict[str, Any]
    seed: int
    config: dict[str, Any]
    after: tuple[str, ...] = ()
    name: str = ""

    def row(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "part": self.part,
            "run": self.run,
            "point": self.point,
            "seed": self.seed,
            "name": self.name,
        }

    def task(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "run": self.run, "config": self.config, "after": self.after}

    def cost(self) -> float:
        """A rough relative cost, to start the longest runs first."""
        c = self.config
        if self.run != "train":
            return 1.0
        m, d, t = c["model"], c["data"], c["train"]
        return float(m["n_layers"]) * t["steps"] * d["batch_size"] * d["seq_len"] * m["d_model"]


@dataclass
class StudyResult:
    """What a study run ended with."""

    spec: StudySpec
    analysis: dict[str, Any]
    ran: int = 0
    skipped: int = 0
    seconds: float = 0.0
    report: Path | None = None

    @property
    def verdict(self) -> str:
        return str(self.analysis["verdict"])


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = tree
    for i, p in enumerate(parents):
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(".".join(parents[: i + 1]), f"is {child!r}, not a table")
        node = child
    node[last] = copy.deepcopy(value)


def _label(point: Mapping[str, Any]) -> str:
    if "label" in point:
        return str(point["label"])
    return ",".join(f"{k.split('.')[-1]}={v}" for k, v in point.items() if k not in TAGS)


def plan(spec: StudySpec, lab: str | Path) -> list[PlannedRun]:
    """Every run of ``spec``, resolved and validated (a bad value names its axis key)."""
    out = []
    for part in spec.parts:
        for point in part.points():
            for seed in part.seeds:
                tree = copy.deepcopy(dict(part.base))
                for key, value in point.items():
                    if key not in TAGS:
                        set_dotted(tree, key, value)
                for key in seed_fields(part.run):
                    set_dotted(tree, key, seed)
                try:
                    run_id, config = resolve(part.run, tree, lab)
                except ConfigError as e:
                    raise ConfigError(f"{spec.name}.{part.name}.{e.field}", str(e)) from None
                name = f"{spec.name}/{part.name}/{_label(point) or 'base'}/seed={seed}"
                out.append(
                    PlannedRun(run_id, part.name, part.run, point, seed, config, part.after, name)
                )
    return out


def is_complete(store: Store, run: PlannedRun) -> bool:
    """Whether the store holds the whole run (its ``after`` probes included)."""
    record = store.get_run(run.run_id)
    if record is None or record.status not in COMPLETE_STATUSES:
        return False
    if run.after and record.status in ("done", "stuck"):  # both get their after-probes
        final = run.config["train"]["steps"]
        for probe in run.after:
            if not any(d.step == final for d in store.diagnostics(run.run_id, probe)):
                return False
    return True


def record_output(store: Store, out: Output, study: str, name: str) -> None:
    """Copy a task's output into the store (the driver's only writes), status last."""
    run_id = out["run_id"]
    store.upsert_run(run_id, out["config"], name=name, study=study, environment=out["environment"])
    if out["metrics"]:
        store.log_metrics_many(run_id, out["metrics"])
    by_step: dict[int, list[Diagnostic]] = {}
    for d in out["diagnostics"]:
        by_step.setdefault(d.step, []).append(d)
    for step, rows in by_step.items():
        store.log_diagnostics(run_id, step, rows)
    seen = {(e.kind, e.message, e.step) for e in store.events(run_id)}
    for step, kind, message, data in out["events"]:
        if (kind, message, step) not in seen:
            store.log_event(run_id, kind, message, step=step, data=data)
    summary = {**out["summary"], "seconds": round(out["seconds"], 3)}
    store.set_status(run_id, out["status"], out["detail"], summary, step=out["step"])
    if out["run"] == "train" and out["status"] in COMPLETE_STATUSES:
        lab = out["config"].get("lab")
        if lab:
            for suffix in ("", "-wal", "-shm", "-checked"):  # the run's own store: now copied
                Path(f"{private_lab(lab, run_id) / DB_NAME}{suffix}").unlink(missing_ok=True)


def analyze(spec: StudySpec, store: Store, planned: Sequence[PlannedRun]) -> dict[str, Any]:
    """Scalars per run, quantities, checks and the verdict, from what the store holds."""
    rows = []
    for p in planned:
        record = store.get_run(p.run_id)
        run = record.as_dict() if record is not None else {"status": "missing"}
        metrics = store.metrics(p.run_id) if record else []
        diags = store.diagnostics(p.run_id) if record else []
        scalars = run_scalars(run, metrics, diags, spec.scalars)
        rows.append(
            {**p.row(), "status": run["status"], "detail": run.get("detail"), "scalars": scalars}
        )
    checks = [check(c, spec.quantities, rows) for c in spec.checks]
    result, reason = verdict(checks)
    counts = dict.fromkeys((*STATUSES, "missing"), 0)
    for r in {r["run_id"]: r for r in rows}.values():
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    incomplete = counts["failed"] or counts["missing"] or counts["pending"] or counts["running"]
    if incomplete and result == "reproduced":
        result, reason = "inconclusive", "runs are missing or failed; " + reason
    return {
        **summary(spec, checks, result),
        "verdict": result,
        "reason": reason,
        "criterion": spec.criterion_text(),
        "counts": {k: v for k, v in counts.items() if v},
        "quantities": quantities(spec.quantities, rows),
        "checks": checks,
        "runs": rows,
        "time": time.time(),
    }


def _bars(specs: Sequence[StudySpec], todo: Mapping[str, int], progress: bool) -> dict[str, Any]:
    from tqdm import tqdm

    return {
        s.name: tqdm(
            total=todo[s.name],
            desc=f"{s.name:<18}",
            unit="run",
            position=i,
            leave=True,
            disable=not progress,
            dynamic_ncols=True,
            file=sys.stderr,
        )
        for i, s in enumerate(specs)
    }


def _execute(
    ex: Executor,
    runs: Sequence[PlannedRun],
    store: Store,
    owner: Mapping[str, tuple[str, str]],
    bars: Mapping[str, Any],
    progress: bool,
    claims: Claims,
) -> None:
    """Run ``runs`` (longest first), record each output as it arrives and release its claim
    (held until then, released at once: two drivers that wait for each other's runs never
    wait forever)."""
    tasks = sorted(runs, key=lambda p: -p.cost())

    def started(task: Mapping[str, Any]) -> None:
        store.set_status(task["run_id"], "running")

    try:
        for out in ex.imap([t.task() for t in tasks], started):
            study, name = owner[out["run_id"]]
            record_output(store, out, study, name)
            claims.release(out["run_id"])
            bars[study].update(1)
            if out["status"] == "failed" and progress:
                bars[study].write(f"run {out['run_id']} ({name}) failed: {out['detail']}")
    except KeyboardInterrupt:
        for p in tasks:
            rec = store.get_run(p.run_id)
            if rec is not None and rec.status == "running":
                store.set_status(p.run_id, "interrupted", "the study was interrupted")
        raise


def run_studies(
    specs: Sequence[StudySpec],
    lab: str | Path = "lab",
    *,
    executor: str | Executor = "local",
    workers: int | None = None,
    threads: int | None = None,
    address: str | None = None,
    progress: bool = True,
    report: bool = True,
) -> list[StudyResult]:
    """Run several studies through one executor session, then analyze and report each.

    Args:
        specs: the studies.
        lab: the lab folder (store, run folders, manifests, report).
        executor: ``local``, ``ray``, ``serial`` or an `Executor`.
        workers, threads: processes (or Ray tasks in flight) and torch threads per worker.
        address: the Ray cluster (``HOST:PORT``) for the ``ray`` executor.
        progress: progress bars (one per study).
        report: write the HTML report (each study's page and the index) at the end.

    Raises:
        ConfigError: a study whose runs do not resolve (nothing is run then).
    """
    lab = check_lab(lab)
    ex = (
        executor
        if isinstance(executor, Executor)
        else make_executor(executor, workers, threads, address)
    )
    start = time.perf_counter()
    planned = {s.name: plan(s, lab) for s in specs}
    check_lab(lab, run_ids=[p.run_id for runs in planned.values() for p in runs])
    lab.mkdir(parents=True, exist_ok=True)
    owner: dict[str, tuple[str, str]] = {}
    with Store(lab) as store, Claims(lab) as claims:
        todo: dict[str, PlannedRun] = {}
        waiting: dict[str, PlannedRun] = {}  # claimed by another driver on this lab
        counts = dict.fromkeys(planned, 0)
        for s in specs:
            # The previous analysis stays until this run has a new one: a driver that fails
            # (or is killed) leaves the last verdict, not null.
            try:
                previous = read_manifest(lab, s.name) or {}
            except ValueError:  # unreadable: nothing worth keeping
                previous = {}
            write_manifest(
                lab,
                {
                    "spec": s.to_dict(),
                    "runs": [p.row() for p in planned[s.name]],
                    "analysis": previous.get("analysis"),
                    "driver_pid": os.getpid(),
                },
            )
            for p in planned[s.name]:
                if p.run_id in owner or is_complete(store, p):
                    owner.setdefault(p.run_id, (s.name, p.name))
                    continue
                owner[p.run_id] = (s.name, p.name)
                if not claims.take(p.run_id):
                    waiting[p.run_id] = p
                    continue
                todo[p.run_id] = p
                counts[s.name] += 1
                store.upsert_run(p.run_id, p.config, name=p.name, study=s.name)
        bars = _bars(specs, counts, progress)
        try:
            _execute(ex, list(todo.values()), store, owner, bars, progress, claims)
            # Runs another driver held: wait for it to let go, then run what it left undone.
            rest = []
            for p in waiting.values():
                claims.wait(p.run_id)
                if is_complete(store, p):
                    claims.release(p.run_id)
                else:
                    rest.append(p)
                    counts[owner[p.run_id][0]] += 1
                    store.upsert_run(p.run_id, p.config, name=p.name, study=owner[p.run_id][0])
            _execute(ex, rest, store, owner, bars, progress, claims)
        finally:
            for bar in bars.values():
                bar.close()
        elapsed = time.perf_counter() - start
        results = []
        for s in specs:
            analysis = analyze(s, store, planned[s.name])
            data = {
                "spec": s.to_dict(),
                "runs": [p.row() for p in planned[s.name]],
                "analysis": analysis,
                "executor": ex.describe(),
                "seconds": elapsed,
                "driver_pid": os.getpid(),
            }
            write_manifest(lab, data)
            results.append(
                StudyResult(
                    s,
                    analysis,
                    counts[s.name],
                    len({p.run_id for p in planned[s.name]}) - counts[s.name],
                    elapsed,
                )
            )
    if report:
        from resnorm.report import write_report

        index = write_report(lab, [s.name for s in specs])
        for r in results:
            r.report = index.parent / f"{r.spec.name}.html"
    return results


def run_study(spec: StudySpec, lab: str | Path = "lab", **kwargs: Any) -> StudyResult:
    """Run one study (see `run_studies` for the arguments)."""
    return run_studies([spec], lab, **kwargs)[0]


def reanalyze(lab: str | Path, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Recompute the analysis of each study manifest from the store (reads the store only) and
    write it back into the manifest; returns the manifests."""
    from resnorm.lab.spec import study_from_dict

    out = []
    with Store(lab, readonly=True) as store:
        for m in manifests(lab):
            if names is not None and m["spec"]["name"] not in names:
                continue
            spec = study_from_dict(m["spec"], m["spec"]["name"])
            planned = [
                PlannedRun(
                    r["run_id"],
                    r["part"],
                    r["run"],
                    r["point"],
                    r["seed"],
                    {},
                    name=r.get("name", ""),
                )
                for r in m["runs"]
            ]
            m["analysis"] = analyze(spec, store, planned)
            write_manifest(lab, m)
            out.append(m)
    return out
