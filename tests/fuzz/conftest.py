"""The fuzz suite's figures, printed at the end of a session that ran any of it."""

from __future__ import annotations

from typing import Any

from fuzz.fuzzkit import TALLY


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TALLY["cases"]:
        figures = ", ".join(
            f"{TALLY[k]} {k}"
            for k in ("cases", "clean", "accepted", "tracebacks", "hangs", "modified")
        )
        terminalreporter.write_line(f"fuzz: {figures}")
