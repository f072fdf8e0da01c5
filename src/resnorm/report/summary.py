"""``summary.md``: every study's verdict with its headline number, and each check beside what
the paper reports, in Markdown (for a terminal, a pull request or a notebook)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from resnorm.report.facts import CheckView, check_views, headline
from resnorm.report.html import number


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "-"


def _measured(v: CheckView) -> str:
    values = ", ".join(f"{k} = {number(x)}" for k, x in v.values.items())
    text = v.measured
    return f"{text}; `{v.expr}` with {values}" if text else f"`{v.expr}` with {values}"


def _result(v: CheckView) -> str:
    out = f"**{v.result}**"
    if v.k is not None and v.n is not None:
        out += f" ({v.k} of {v.n} seeds)"
    elif v.per_seed:
        out += " [" + ", ".join(f"seed {p['seed']}: {p['result']}" for p in v.per_seed) + "]"
    return out + (" (informational)" if v.informational else "")


def summary_markdown(manifests: Sequence[Mapping[str, Any]]) -> str:
    """The Markdown summary: per study its verdict, headline, claim, and every check beside the
    paper's number."""
    lines = [
        "# resnorm studies: summary",
        "",
        "| study | verdict | headline | scale | claim |",
        "|---|---|---|---|---|",
    ]
    for m in manifests:
        s, a = m["spec"], m["analysis"]
        h = headline(m)
        lines.append(
            f"| [{s['name']}]({s['name']}.html) | **{a['verdict']}** | "
            f"{_cell(h.text if h else '')} | {s.get('scale', '')} | {_cell(s['claim'])} |"
        )
    for m in manifests:
        s, a = m["spec"], m["analysis"]
        h = headline(m)
        lines += ["", f"## {s['name']}: {a['verdict']}", "", f"{s['claim']} ({s['source']})", ""]
        if h:
            lines += [f"Headline: **{h.text}**" + (f" ({h.what})" if h.what else ""), ""]
        lines += [
            f"Criterion: `{a.get('criterion', '')}`",
            "",
            "| check | the paper reports | where | we measure | result |",
            "|---|---|---|---|---|",
        ]
        for v in check_views(m):
            lines.append(
                f"| {_cell(v.label or v.expr)} | {_cell(v.paper_reports)} | "
                f"{_cell(v.paper_where)} | {_cell(_measured(v))} | {_cell(_result(v))} |"
            )
        if a.get("why"):
            lines += ["", f"Why this may differ: {a['why']}"]
        counts = ", ".join(f"{k} {v}" for k, v in (a.get("counts") or {}).items())
        lines += ["", f"Runs: {counts}.", ""]
    return "\n".join(lines) + "\n"


__all__ = ["summary_markdown"]
