"""`python -m bench` (`make bench`): measure, write ``bench/results/*.json``, render the report.

Usage::

    python -m bench                      # everything (~15-20 min on 2 cores), docs/performance.md
    python -m bench --quick              # a smoke run: few steps, into bench/results/quick/
    python -m bench --only contenders    # some sections (the report uses the others' last JSON)
    python -m bench --report-only        # re-render docs/performance.md from the JSON
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.generation import generation
from bench.loading import loading
from bench.machine import IdleWaiter
from bench.report import render
from bench.runner import log
from bench.speed import (
    Options,
    bf16_breakdown,
    bf16_width,
    contenders,
    depth,
    optimizer,
    topologies,
)
from bench.training import bf16_training, diagnostics_overhead, sweep

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = (
    "peaks",
    "contenders",
    "optimizer",
    "bf16_width",
    "bf16_breakdown",
    "topologies",
    "depth",
    "diagnostics",
    "bf16_training",
    "sweep",
    "generation",
    "loading",
)


def peaks(o: Options, waiter: IdleWaiter) -> dict[str, Any]:
    from resnorm.doctor import doctor

    waiter.wait()
    return doctor(seconds=1.0 if o.quick else 4.0)


def _git_sha() -> str | None:
    """The commit measured, ``-dirty`` when tracked code differs from it (results excluded)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
             ":!bench/results", ":!docs/performance.md"],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
    except OSError:
        return None
    sha = out.stdout.strip()
    return (sha + ("-dirty" if changed.stdout.strip() else "")) or None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a smoke run with few steps")
    p.add_argument("--only", help=f"comma-separated sections of: {', '.join(SECTIONS)}")
    p.add_argument("--results", type=Path, help="JSON folder (default bench/results[/quick])")
    p.add_argument("--doc", type=Path, help="report path (default docs/performance.md)")
    p.add_argument("--report-only", action="store_true", help="render the report, measure nothing")
    p.add_argument("--idle-budget", type=float, default=240.0, help="seconds of idle waits in all")
    args = p.parse_args(argv)
    o = Options(quick=args.quick)
    results = args.results or ROOT / "bench" / "results" / ("quick" if o.quick else "")
    doc = args.doc or (results / "performance.md" if o.quick else ROOT / "docs/performance.md")
    chosen = SECTIONS if not args.only else tuple(s.strip() for s in args.only.split(","))
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        p.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    results.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        import torch

        waiter = IdleWaiter(
            max_wait_s=5.0 if o.quick else 20.0, budget_s=30.0 if o.quick else args.idle_budget
        )
        peak: dict[str, float] = {}
        if "peaks" not in chosen and (results / "peaks.json").exists():
            peak = json.loads((results / "peaks.json").read_text())["matmul_gflops"]["cpu"]
        runs: dict[str, Callable[..., dict[str, Any]]] = {
            "peaks": peaks,
            "contenders": lambda o, w: contenders(o, w, peak),
            "optimizer": optimizer,
            "bf16_width": bf16_width,
            "bf16_breakdown": bf16_breakdown,
            "topologies": topologies,
            "depth": depth,
            "diagnostics": diagnostics_overhead,
            "bf16_training": bf16_training,
            "sweep": sweep,
            "generation": generation,
            "loading": loading,
        }
        start_all = time.perf_counter()
        for name in SECTIONS:
            if name not in chosen:
                continue
            log(f"section {name}")
            start, waited = time.perf_counter(), waiter.waited_s
            data = runs[name](o, waiter)
            if name == "peaks":
                peak.update(data["matmul_gflops"]["cpu"])
            data["meta"] = {
                "section": name,
                "quick": o.quick,
                "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                "duration_s": round(time.perf_counter() - start, 1),
                "idle_waited_s": round(waiter.waited_s - waited, 1),
                "waiter": waiter.to_dict(),
                "threads": torch.get_num_threads(),
                "git": _git_sha(),
            }
            (results / f"{name}.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
            log(f"section {name} done in {data['meta']['duration_s']} s")
        log(f"all sections done in {time.perf_counter() - start_all:.0f} s")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(render(results))
    log(f"wrote {doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
