"""Interleaved timing of several contenders, and the statistics the report prints.

`interleaved` warms every contender up, then runs rounds: each round waits for an idle machine
and times one unit (a training step, or a block of steps) of every contender, in an order that
rotates from round to round, so that slow drifts of the machine hit every contender alike.
Ratios are taken per round (contender / reference measured in the same round), then summarized
as min / median / max.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bench.machine import IdleWaiter, Timed, timed


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def interleaved(
    units: Mapping[str, Callable[[], Any]],
    *,
    rounds: int,
    warmup: int,
    waiter: IdleWaiter,
    limit: float = 0.05,
    max_attempts: int = 3,
    label: str = "",
    budget_s: float | None = None,
    min_rounds: int = 3,
) -> dict[str, list[Timed]]:
    """Time ``rounds`` units of each contender after ``warmup`` untimed ones.

    With ``budget_s``, stop early (after at least ``min_rounds``) once the section has run
    that long: on a busy machine repeated attempts can otherwise multiply its duration.
    """
    names = list(units)
    start = time.perf_counter()
    for _ in range(warmup):
        for name in names:
            units[name]()
    out: dict[str, list[Timed]] = {n: [] for n in names}
    for r in range(rounds):
        waiter.wait()
        k = r % len(names)
        for name in names[k:] + names[:k]:
            # Past half the budget a busy machine gets no more repeats: they would not help.
            late = budget_s is not None and time.perf_counter() - start > budget_s / 2
            attempts = 1 if late else max_attempts
            out[name].append(timed(units[name], limit=limit, max_attempts=attempts))
        line = ", ".join(f"{n} {out[n][-1].seconds * 1e3:.0f}" for n in names)
        log(f"{label} round {r + 1}/{rounds} (ms): {line}")
        spent = time.perf_counter() - start
        if budget_s is not None and r + 1 >= min_rounds and spent > budget_s and r + 1 < rounds:
            log(f"{label}: stopping after {r + 1} rounds, {spent:.0f} s > budget {budget_s:.0f} s")
            break
    return out


def summarize(series: Sequence[Timed], limit: float = 0.05) -> dict[str, Any]:
    """Median / min / max seconds of a series and how disturbed it was."""
    s = [t.seconds for t in series]
    f = [t.interference.fraction for t in series]
    return {
        "n": len(s),
        "median_s": statistics.median(s),
        "min_s": min(s),
        "max_s": max(s),
        "seconds": s,
        "interference_median": round(statistics.median(f), 4),
        "interference_max": round(max(f), 4),
        "over_limit": sum(x > limit for x in f),
        "attempts": sum(t.attempts for t in series),
    }


def ratios(a: Sequence[Timed], b: Sequence[Timed]) -> dict[str, float]:
    """min / median / max of the per-round ratio a / b."""
    r = [x.seconds / y.seconds for x, y in zip(a, b, strict=True)]
    return {"min": min(r), "median": statistics.median(r), "max": max(r)}


def total_ratio(a: Sequence[Timed], b: Sequence[Timed]) -> float:
    """Ratio of medians, a cross-check of the median per-round ratio."""
    return statistics.median(t.seconds for t in a) / statistics.median(t.seconds for t in b)
