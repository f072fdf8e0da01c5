"""The report: figures, a self-contained HTML page per study, an index, PNGs and a Markdown
summary, all written under ``<lab>/report/``.

The report only reads: the study manifests (``<lab>/studies/*.json``, written by the runner with
each study's spec, runs and analysis) and the results store, opened read-only.
``write_report(lab)`` writes::

    <lab>/report/index.html          the studies and their verdicts
    <lab>/report/<study>.html        claim, setup, figures, numbers, verdict (self-contained)
    <lab>/report/<study>/<n>-<type>.png
    <lab>/report/summary.md          verdicts and the numbers behind them
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from resnorm.errors import ConfigError
from resnorm.report.html import index_page, number, study_page


def _manifests(lab: Path) -> list[dict[str, Any]]:
    folder = lab / "studies"
    out = []
    for p in sorted(folder.glob("*.json")):
        m = json.loads(p.read_text())
        if m.get("analysis"):
            out.append(m)
    return out


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def study_figures(manifest: Mapping[str, Any], store: Any) -> list[tuple[str, bytes]]:
    """``(caption, png)`` of each figure of a study."""
    from resnorm.report.figures import render

    out = []
    for spec in manifest["spec"]["figures"]:
        png = render(spec, manifest["analysis"]["runs"], store)
        out.append((spec.get("title") or spec["type"], png))
    return out


def summary_markdown(manifests: Sequence[Mapping[str, Any]]) -> str:
    """The Markdown summary: per study its verdict, claim, and every check with its numbers."""
    lines = [
        "# resnorm studies: summary",
        "",
        "| study | verdict | scale | claim |",
        "|---|---|---|---|",
    ]
    for m in manifests:
        s, a = m["spec"], m["analysis"]
        lines.append(
            f"| [{s['name']}]({s['name']}.html) | **{a['verdict']}** | {s['scale']} | "
            f"{s['claim']} |"
        )
    for m in manifests:
        s, a = m["spec"], m["analysis"]
        lines += [
            "",
            f"## {s['name']}: {a['verdict']}",
            "",
            f"{s['claim']} ({s['source']})",
            "",
            f"Criterion: `{a['criterion']}`",
            "",
        ]
        for c in a["checks"]:
            values = ", ".join(f"{k} = {number(v)}" for k, v in c["values"].items())
            info = " (informational)" if c.get("informational") else ""
            seeds = ""
            if c.get("per_seed"):
                seeds = (
                    " ["
                    + ", ".join(f"seed {p['seed']}: {p['result']}" for p in c["per_seed"])
                    + "]"
                )
            lines.append(
                f"- {c.get('label') or c['expr']}{info}: **{c['result']}**{seeds} — "
                f"`{c['expr']}` with {values}"
            )
        counts = ", ".join(f"{k} {v}" for k, v in a["counts"].items())
        lines += ["", f"Runs: {counts}.", ""]
    return "\n".join(lines) + "\n"


def write_report(lab: str | Path = "lab", studies: Sequence[str] | None = None) -> Path:
    """Write (or refresh) the report of a lab folder; returns the index page's path.

    Args:
        lab: the lab folder.
        studies: redraw only these studies' pages (the index and summary cover every analysed
            study); ``None``: all.

    Raises:
        ConfigError: if the lab has no analysed study.
    """
    from resnorm.report.figures import plt
    from resnorm.store import Store

    lab = Path(lab)
    manifests = _manifests(lab)
    if not manifests:
        raise ConfigError("lab", f"no analysed study in {str(lab)!r}: run a study first")
    out = lab / "report"
    with Store(lab, readonly=True) as store:
        for m in manifests:
            name = m["spec"]["name"]
            page_path = out / f"{name}.html"
            if studies is not None and name not in studies and page_path.exists():
                continue
            figures = study_figures(m, store)
            for i, (spec, (_, png)) in enumerate(zip(m["spec"]["figures"], figures, strict=True)):
                _write(out / name / f"{i + 1}-{spec['type']}.png", png)
            _write(page_path, study_page(m, figures))
    plt.close("all")
    _write(out / "summary.md", summary_markdown(manifests))
    index = out / "index.html"
    _write(index, index_page(manifests))
    return index


__all__ = ["study_figures", "summary_markdown", "write_report"]
