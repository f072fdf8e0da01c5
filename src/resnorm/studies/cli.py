"""The lab's commands: ``resnorm study list | run | status``, ``resnorm report``, ``resnorm demo``.

They live with the studies, not in the lab: this is the one place that maps a study's name to
its spec (`resnorm.studies.get_study`), so the lab never imports the studies that use it.

Each command is a class with ``add_arguments(parser)`` and ``run(args) -> int``: `StudyList`,
`StudyRun`, `StudyStatus`, `Report`, `Demo`. Errors become one line and an exit status in
`resnorm.cli.main` alone (2 bad input with the field named and nothing run, 1 the environment,
130 interrupted: run the same command again to resume). The module's
own ``add_arguments``/``run`` are the ``study`` group (``list | run | status``), for
``resnorm.cli``'s delegation by module.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from resnorm.errors import ConfigError


def _lab(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lab", default="lab", metavar="DIR", help="lab folder (default: lab)")


def _execution(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--executor",
        default="local",
        choices=("local", "ray", "serial"),
        help="where runs execute (default: local process pool)",
    )
    parser.add_argument("--address", metavar="HOST:PORT", help="Ray cluster (with --executor ray)")
    parser.add_argument(
        "--workers", type=int, metavar="N", help="processes (default: one per core)"
    )
    parser.add_argument("--threads", type=int, metavar="N", help="torch threads per worker")
    parser.add_argument(
        "--ray-start-timeout",
        type=float,
        metavar="S",
        help="seconds a local Ray may take to start (with --executor ray; default 300)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--no-report", action="store_true", help="do not write the report")


def _executor(args: argparse.Namespace) -> Any:
    """The executor the execution flags describe (validated before anything is written)."""
    from resnorm.lab.executors import make_executor

    timeout = args.ray_start_timeout
    if timeout is not None and not (math.isfinite(timeout) and 0 < timeout <= 86400):
        raise ConfigError("--ray-start-timeout", f"got {timeout}, expected 0 < seconds <= 86400")
    return make_executor(args.executor, args.workers, args.threads, args.address, timeout)


def verdict_table(results: Sequence[Any]) -> str:
    """Plain text: study, verdict, its headline effect with its spread, runs."""
    rows = [("study", "verdict", "headline (effect, 95% t interval over seeds)", "runs")]
    for r in results:
        a = r.analysis
        head = a.get("headline") or {}
        text = f"{head.get('label', '')}: {head.get('text', '')}" if head else ""
        counts = " ".join(f"{k}:{v}" for k, v in a["counts"].items())
        rows.append((r.spec.name, a["verdict"], text, counts))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for i, row in enumerate(rows):
        lines.append(
            "  ".join(v.ljust(w) for v, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
        )
        if i == 0:
            lines.append("-" * (sum(widths) + 6 + len(row[3])))
    return "\n".join(lines)


def _run_and_print(specs: Sequence[Any], args: argparse.Namespace) -> int:
    """Run ``specs`` as the execution flags say, then print their verdicts and the report."""
    from resnorm.lab.runner import run_studies

    start = time.perf_counter()
    results = run_studies(
        specs,
        args.lab,
        executor=_executor(args),
        progress=not args.no_progress,
        report=not args.no_report,
    )
    _print_results(results, args.lab, time.perf_counter() - start)
    return 0


def _print_results(results: Sequence[Any], lab: str, seconds: float) -> None:
    print()
    print(verdict_table(results))
    for r in results:
        print(f"\n{r.spec.name}: {r.analysis['verdict']}")
        for c in r.analysis["checks"]:
            tag = "  (informational) " if c.get("informational") else "  "
            print(f"{tag}{c.get('sentence') or c['expr']}")
    report = results[0].report if results else None
    if report is not None:
        print(f"\nreport: {report.parent / 'index.html'}")
    print(f"wall time: {seconds:.1f} s; lab: {lab}")


def _spec(name: str, scale: str) -> Any:
    from resnorm.lab.spec import load_study
    from resnorm.studies import get_study

    if name.endswith(".toml") or os.sep in name:
        return load_study(name)
    return get_study(name, scale)


class StudyList:
    """``resnorm study list``: the built-in studies, what they test and how long they take."""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--scale", default="quick", choices=("quick", "full"))

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from resnorm.lab.estimate import (
            format_duration,
            local_workers,
            measured_step_time,
            study_seconds,
        )
        from resnorm.lab.runner import plan
        from resnorm.studies import STUDIES, get_study

        workers, threads, device = local_workers()
        step_time = measured_step_time(device, threads)
        for name in STUDIES.names():
            spec = get_study(name, args.scale)
            runs = list({p.run_id: p for p in plan(spec, "lab")}.values())
            kinds = Counter(p.run for p in runs)
            seconds = study_seconds(((p.run, p.config) for p in runs), workers, step_time)
            print(
                f"{name:<18} {len(runs):>4} runs  {spec.title}\n{'':<18} {spec.claim}\n"
                f"{'':<18} criterion: {spec.criterion_text()}\n"
                f"{'':<18} runs: {', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}; "
                f"expected time {format_duration(seconds)} on this machine "
                f"({workers} worker{'s' if workers > 1 else ''}, {device})\n"
            )
        print(
            f"Expected times are estimates ({args.scale} scale): run counts times training "
            "step times measured just now on this machine (resnorm.lab.estimate)."
        )
        return 0


class StudyRun:
    """``resnorm study run NAME|FILE.toml``: run (or resume) a study, then report it."""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("study", help="a built-in study name or a study TOML file")
        parser.add_argument("--scale", default="quick", choices=("quick", "full"))
        parser.add_argument(
            "--seeds",
            metavar="SEEDS",
            help="replace every part's seeds: 0-9, 0,1,5 or 3-5,8 (runs already done are kept)",
        )
        parser.add_argument(
            "-o",
            "--override",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="set KEY of the base config of every part that has it, e.g. model.d_model=128 "
            "(repeatable; values as in resnorm train -o)",
        )
        _lab(parser)
        _execution(parser)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from resnorm.lab.overrides import apply_overrides, parse_overrides, parse_seeds

        seeds = parse_seeds(args.seeds) if args.seeds is not None else None
        spec = _spec(args.study, args.scale)
        spec = apply_overrides(spec, seeds, parse_overrides(args.override))
        return _run_and_print([spec], args)


class StudyStatus:
    """``resnorm study status``: per study, how many runs are done, running, diverged, ..."""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("studies", nargs="*", help="only these studies")
        _lab(parser)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from resnorm.lab.manifest import study_status

        rows = study_status(args.lab, args.studies or None)
        if not rows:
            print(f"no studies in {args.lab}")
            return 0
        cols = [
            "done",
            "running",
            "pending",
            "diverged",
            "stuck",
            "failed",
            "interrupted",
            "missing",
        ]
        print(f"{'study':<18} {'runs':>5} " + " ".join(f"{c:>11}" for c in cols) + "  verdict")
        for r in rows:
            counts = r["counts"]
            print(
                f"{r['study']:<18} {r['runs']:>5} "
                + " ".join(f"{counts.get(c, 0):>11}" for c in cols)
                + f"  {r['verdict']}"
            )
        return 0


class Report:
    """``resnorm report``: re-analyse every study from the store and write the report, with a
    page per training run and a comparison page (``--runs a,b,c``, default every run)."""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("studies", nargs="*", help="only redraw these studies' pages")
        _lab(parser)
        parser.add_argument(
            "--runs",
            metavar="A,B,C",
            help="runs the comparison page overlays: ids or unique prefixes (default: every run)",
        )

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from resnorm.lab.runner import reanalyze
        from resnorm.report import write_report

        reanalyze(args.lab, args.studies or None)
        runs = None if args.runs is None else args.runs.split(",")
        index = write_report(args.lab, args.studies or None, runs)
        print(f"report: {index}")
        return 0


class Demo:
    """``resnorm demo``: skip, gradients-at-init, output-change and a small depth map at quick
    scale (minutes on a 2-core CPU), then a table of verdicts and the report's path."""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        _lab(parser)
        _execution(parser)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from resnorm.studies import demo_studies

        return _run_and_print(demo_studies(), args)


STUDY_VERBS: dict[str, Any] = {"list": StudyList, "run": StudyRun, "status": StudyStatus}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``resnorm study list | run | status`` as one subcommand group (``run`` below runs it)."""
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, cls in STUDY_VERBS.items():
        p = verbs.add_parser(verb, help=(cls.__doc__ or "").split("\n")[0])
        cls.add_arguments(p)
        p.set_defaults(study_command=cls)


def run(args: argparse.Namespace) -> int:
    """Run the ``resnorm study`` verb that `add_arguments` parsed."""
    return int(args.study_command.run(args))
