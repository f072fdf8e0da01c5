"""Measuring on a shared, noisy machine: wait for idle CPUs, account for other processes.

`/proc/stat` gives the CPU time every process of the machine (VM) used, `/proc/self/stat` this
process's share (all its threads, and its worker processes once reaped); their difference over a
timed section is the time other processes took from it. `timed` runs a section, records that
interference as a fraction of the section's CPU capacity (wall time x CPUs), and repeats the
section while it exceeds the limit (default 5%), keeping the least-disturbed attempt. Hypervisor
steal time is recorded too and counts as interference.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

TICK = os.sysconf("SC_CLK_TCK")
N_CPUS = os.cpu_count() or 1
T = TypeVar("T")


@dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU seconds at one instant."""

    wall: float
    busy: float  # all CPUs: user + nice + system + irq + softirq
    steal: float
    own: float  # this process (all threads) and its reaped children: utime + stime + cu + cs

    @classmethod
    def now(cls) -> CpuSample:
        wall = time.perf_counter()
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        with open("/proc/self/stat") as f:
            # Field 2 (comm) may hold spaces: split after its closing parenthesis.
            rest = f.read().rsplit(")", 1)[1].split()
        own = sum(int(v) for v in rest[11:15])  # utime stime cutime cstime
        busy = (user + nice + system + irq + softirq) / TICK
        return cls(wall, busy, steal / TICK, own / TICK)


@dataclass(frozen=True)
class Interference:
    """What happened on the machine during one timed section."""

    wall_s: float
    own_cpu_s: float
    other_cpu_s: float
    steal_s: float

    @property
    def fraction(self) -> float:
        """Other processes' CPU time plus steal, as a share of the section's CPU capacity."""
        capacity = max(self.wall_s * N_CPUS, 1e-9)
        return max(self.other_cpu_s + self.steal_s, 0.0) / capacity

    @classmethod
    def between(cls, a: CpuSample, b: CpuSample) -> Interference:
        own = b.own - a.own
        return cls(b.wall - a.wall, own, max(b.busy - a.busy - own, 0.0), b.steal - a.steal)

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "fraction": round(self.fraction, 4)}


def load_now(window_s: float = 0.5) -> float:
    """The share of all CPUs that other processes used over the next ``window_s`` seconds."""
    a = CpuSample.now()
    time.sleep(window_s)
    return Interference.between(a, CpuSample.now()).fraction


@dataclass
class IdleWaiter:
    """Waits until other processes use less than ``threshold`` of the CPUs for ``settle_s``.

    Gives up after ``max_wait_s`` per call, and waits no more once ``budget_s`` in all is spent
    (the machine may never be idle); the time waited and the give-ups go into the report.
    """

    threshold: float = 0.10
    settle_s: float = 1.0
    max_wait_s: float = 20.0
    budget_s: float = 300.0
    waited_s: float = 0.0
    gave_up: int = 0
    calls: int = 0

    def wait(self) -> bool:
        """Block until idle (True) or until this call's allowance has passed (False)."""
        self.calls += 1
        allowed = min(self.max_wait_s, max(self.budget_s - self.waited_s, 0.0))
        start = time.perf_counter()
        quiet_since: float | None = None
        try:
            while True:
                if load_now(0.25) < self.threshold:
                    now = time.perf_counter()
                    quiet_since = quiet_since if quiet_since is not None else now - 0.25
                    if now - quiet_since >= self.settle_s:
                        return True
                else:
                    quiet_since = None
                if time.perf_counter() - start > allowed:
                    self.gave_up += 1
                    return False
        finally:
            self.waited_s += time.perf_counter() - start

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "max_wait_s": self.max_wait_s,
            "budget_s": self.budget_s,
            "waits": self.calls,
            "waited_s": round(self.waited_s, 1),
            "gave_up": self.gave_up,
        }


@dataclass
class Timed:
    """One timed section: seconds, the interference during it, how many attempts it took."""

    seconds: float
    interference: Interference
    attempts: int
    value: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "attempts": self.attempts,
            "interference": round(self.interference.fraction, 4),
        }


def timed(
    fn: Callable[[], T],
    *,
    limit: float = 0.05,
    max_attempts: int = 3,
    before: Callable[[], Any] | None = None,
) -> Timed:
    """Run ``fn``, repeating it while other processes took more than ``limit`` of the CPUs.

    ``before`` runs before every attempt, untimed (an idle wait). Returns the first attempt
    within the limit, else the least-disturbed one; ``attempts`` says how many ran.
    """
    best: Timed | None = None
    for attempt in range(1, max_attempts + 1):
        if before is not None:
            before()
        a = CpuSample.now()
        value = fn()
        b = CpuSample.now()
        got = Timed(b.wall - a.wall, Interference.between(a, b), attempt, value)
        if best is None or got.interference.fraction < best.interference.fraction:
            best = got
        if got.interference.fraction <= limit:
            best = got
            break
    assert best is not None
    best.attempts = attempt
    return best
