"""A study's page: the claim and its source, the verdict with the headline number, the paper
beside our measurement check by check, the protocol and where we depart from it, why the result
may differ, the seeds and overrides used, the figures with captions, and the numbers.

Sections whose fields an older manifest lacks (protocol, departures, the paper, the headline)
are left out; the page never fails on a missing field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from resnorm.report.facts import CheckView, check_views, has_paper, headline, seeds_by_part
from resnorm.report.html import badge, esc, image, linked, number, page, points_table, setup_html

#: The protocol's optional keys, in the order the page lists them, with their names.
PROTOCOL_KEYS: tuple[tuple[str, str], ...] = (
    ("task", "task"),
    ("metric", "metric"),
    ("width", "width"),
    ("depth", "depth"),
    ("init", "init"),
    ("embedding", "embedding"),
    ("positional", "positional encoding"),
    ("final_norm", "final norm"),
)


def headline_html(manifest: Mapping[str, Any]) -> str:
    """The verdict badge with the headline number and what it measures."""
    a = manifest["analysis"]
    h = headline(manifest)
    if h is None:
        return f'<p class="headline">{badge(a["verdict"])}</p>'
    what = f" <small>{esc(h.what)}</small>" if h.what else ""
    return f'<p class="headline">{badge(a["verdict"])} &nbsp;{esc(h.text)}{what}</p>'


def _seed_marks(v: CheckView) -> str:
    """``holds on k of n seeds`` and one small mark per seed."""
    if v.k is None or v.n is None:
        return ""
    need = f" (needs {v.min_pass})" if v.min_pass else ""
    marks = "".join(
        f'<span class="seed {esc(p.get("result", "missing"))}" '
        f'title="seed {esc(p.get("seed"))}: {esc(p.get("result"))}">{esc(p.get("seed"))}</span>'
        for p in v.per_seed
    )
    return f"<br>holds on {v.k} of {v.n} seeds{need}<br>{marks}"


def _values(v: CheckView) -> str:
    values = ", ".join(f"{esc(k)} = {number(x)}" for k, x in v.values.items())
    used = f" with {values}" if values else ""
    return f'<br><small class="info"><code>{esc(v.expr)}</code>{used}</small>'


def paper_table(views: Sequence[CheckView]) -> str:
    """One row per check: what the paper reports and where, what we measure, the result. The
    paper's columns are left out when no check has them (an older manifest)."""
    paper = has_paper(views)
    head = "<th>check</th>"
    if paper:
        head += "<th>the paper reports</th><th>where</th>"
    head += "<th>we measure</th><th>verdict of this check</th>"
    rows = []
    for v in views:
        info = ' <span class="tag">informational: does not count</span>' if v.informational else ""
        cells = f"<td>{esc(v.label or v.expr)}{info}</td>"
        if paper:
            cells += f"<td>{esc(v.paper_reports or '-')}</td><td>{esc(v.paper_where or '-')}</td>"
        cells += f"<td>{esc(v.measured)}{_values(v)}</td>"
        shown = v.note and v.note not in v.measured
        note = f'<br><span class="info">{esc(v.note)}</span>' if shown else ""
        cells += (
            f'<td><span class="{esc(v.result)}">{esc(v.result)}</span>{_seed_marks(v)}{note}</td>'
        )
        klass = ' class="informational"' if v.informational else ""
        rows.append(f"<tr{klass}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def protocol_html(spec: Mapping[str, Any]) -> str:
    """What the study mirrors of the paper's setup, and where it departs (empty if unstated)."""
    proto = spec.get("protocol") or {}
    departures = spec.get("departures") or []
    if not proto and not departures:
        return ""
    out = ["<h2>Protocol: the paper's setup, and where we depart from it</h2>"]
    if proto.get("mirrors"):
        out.append(f"<p>{linked(str(proto['mirrors']))}</p>")
    items = [(name, proto[k]) for k, name in PROTOCOL_KEYS if proto.get(k)]
    if items:
        out.append(
            "<table>"
            + "".join(f"<tr><th>{esc(n)}</th><td>{esc(v)}</td></tr>" for n, v in items)
            + "</table>"
        )
    if departures:
        out.append("<h3>Departures at CPU scale</h3><ul>")
        for d in departures:
            why = f" &mdash; <span class='info'>{esc(d['why'])}</span>" if d.get("why") else ""
            out.append(f"<li>{esc(d.get('what', ''))}{why}</li>")
        out.append("</ul>")
    return "".join(out)


def seeds_html(spec: Mapping[str, Any]) -> str:
    """The seeds each part ran and the user's overrides of the study."""
    parts = seeds_by_part(spec)
    seeds = "; ".join(
        (f"{esc(name)}: " if len(parts) > 1 else "") + ", ".join(str(s) for s in ss)
        for name, ss in parts
    )
    out = f"<h2>Seeds and overrides</h2><p>Seeds: {seeds or 'none'}.</p>"
    if "overrides" not in spec:
        return out
    overrides = spec.get("overrides") or {}
    if not overrides:
        return out + "<p>Overrides: none (the study as built).</p>"
    items = "".join(
        f"<li><code>{esc(k)} = {esc(json.dumps(v, default=str))}</code></li>"
        for k, v in overrides.items()
    )
    return out + f"<p>Overrides (<code>-o</code>) of the study's base config:</p><ul>{items}</ul>"


def figures_html(spec: Mapping[str, Any], figures: Sequence[tuple[str, bytes]]) -> str:
    """Each figure with its caption under it (``figures``: ``(caption, png)``)."""
    specs, out = spec.get("figures") or [], []
    for i, (caption, png) in enumerate(figures):
        fspec = specs[i] if i < len(specs) else {}
        title = fspec.get("title") or fspec.get("type", "")
        out.append(
            f'<figure id="figure-{i + 1}">{image(png, str(title))}<figcaption>'
            f"<b>Figure {i + 1}. {esc(title)}</b> {esc(caption)}</figcaption></figure>"
        )
    return "".join(out) or "<p>no figures</p>"


def study_page(manifest: Mapping[str, Any], figures: Sequence[tuple[str, bytes]]) -> str:
    """The HTML page of one study (figures as ``(caption, png)``)."""
    spec, a = manifest["spec"], manifest["analysis"]
    views = check_views(manifest)
    counts = ", ".join(f"{k}: {v}" for k, v in (a.get("counts") or {}).items())
    why = f'<h2>Why this may differ</h2><p class="why">{esc(a["why"])}</p>' if a.get("why") else ""
    quantities = "".join(
        f'<tr><td><code>{esc(k)}</code></td><td class="num">{number(v)}</td></tr>'
        for k, v in (a.get("quantities") or {}).items()
    )
    scalar_names = [*spec.get("scalars", {}), "final_loss", "diverged"]
    body = (
        f'<p><a href="index.html">&larr; all studies</a></p>'
        f"<h1>{esc(spec.get('title') or spec['name'])}</h1>"
        f'<p class="claim">{esc(spec["claim"])}</p>'
        f"<p>Source: {linked(spec.get('source', ''))}</p>"
        f"{headline_html(manifest)}<p>{esc(a.get('reason', ''))}</p>"
        f"<h2>The paper beside our measurement</h2>{paper_table(views)}"
        f"<p>Criterion (the checks that count, all of which must hold): "
        f"{esc(a.get('criterion', ''))}</p>"
        f"{protocol_html(spec)}{why}{seeds_html(spec)}"
        f"<h2>Figures</h2>{figures_html(spec, figures)}"
        f"<h2>Setup</h2>{setup_html(spec, manifest)}<p>{esc(spec.get('notes', ''))}</p>"
        f"<p>runs: {esc(counts)}</p>"
        f"<h2>Numbers</h2><h3>Quantities</h3><table>{quantities}</table>"
        f"<h3>Per point (seed mean, [min, max] over seeds)</h3>"
        f"{points_table(a.get('runs') or [], scalar_names)}"
    )
    return page(f"resnorm study: {spec['name']}", body)


__all__ = ["paper_table", "study_page"]
