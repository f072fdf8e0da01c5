"""HTML pages of the report: one self-contained page per study (figures inlined as base64 PNG,
CSS inline, no external resource) and an index over the studies.

Every page ends with a small script that, once the page has loaded, checks that every figure
decoded (``complete && naturalWidth > 0``) and records it as ``data-figures`` on ``<body>``
(``rendered N/N`` or ``broken k/N``); the headless-browser test reads it.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1100px;color:#1b1f24;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}
h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f4f5f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{display:inline-block;padding:.2em .7em;border-radius:1em;font-weight:600;color:#fff}
.reproduced{background:#2a8a4a}.not-reproduced{background:#b8322c}.inconclusive{background:#a77400}
.pass{color:#2a8a4a;font-weight:600}.fail{color:#b8322c;font-weight:600}
.missing,.mixed{color:#a77400;font-weight:600}.info{color:#666}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
code,pre{background:#f6f8fa;font-size:.85em}pre{padding:.6em;overflow-x:auto}
.claim{font-size:1.05em;border-left:4px solid #888;padding-left:.8em}
"""

SCRIPT = """
<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var state = ok === imgs.length ? 'rendered ' + ok + '/' + imgs.length
                                 : 'broken ' + (imgs.length - ok) + '/' + imgs.length;
  document.body.setAttribute('data-figures', state);
});
</script>
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def number(value: Any) -> str:
    """A number as the tables show it."""
    if isinstance(value, bool):
        return str(value)
    if not isinstance(value, (int, float)):
        return esc(value)
    v = float(value)
    if math.isnan(v):
        return "n/a"
    if math.isinf(v):
        return "never" if v > 0 else "-inf"
    if v == 0 or 1e-3 <= abs(v) < 1e4:
        return f"{v:.4g}"
    return f"{v:.3e}"


def badge(verdict: str) -> str:
    return f'<span class="verdict {verdict.replace(" ", "-")}">{esc(verdict)}</span>'


def page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width"><title>{esc(title)}</title>'
        f'<style>{CSS}</style></head><body data-figures="pending">\n{body}\n{SCRIPT}'
        "</body></html>\n"
    )


def checks_table(checks: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for c in checks:
        values = ", ".join(f"{esc(k)} = {number(v)}" for k, v in c["values"].items())
        seeds = ""
        if c.get("per_seed"):
            seeds = "<br>" + "; ".join(
                f'seed {p["seed"]}: <span class="{p["result"]}">{p["result"]}</span>'
                for p in c["per_seed"]
            )
        info = ' <span class="info">(informational)</span>' if c.get("informational") else ""
        if c.get("note"):
            seeds += f'<br><span class="info">{esc(c["note"])}</span>'
        rows.append(
            f"<tr><td>{esc(c.get('label') or '')}{info}<br><code>{esc(c['expr'])}</code></td>"
            f'<td>{values}</td><td><span class="{c["result"]}">{c["result"]}</span>{seeds}</td>'
            "</tr>"
        )
    return (
        "<table><tr><th>check</th><th>measured</th><th>result</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def points_table(runs: Sequence[Mapping[str, Any]], scalars: Sequence[str]) -> str:
    """Seed mean (and min..max) of each scalar per point, with the statuses of its runs."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in runs:
        key = json.dumps([r["part"], r["point"]], sort_keys=True, default=str)
        groups.setdefault(key, []).append(r)
    keys: list[str] = []
    for r in runs:
        for k in r["point"]:
            if k not in keys:
                keys.append(k)
    shown = [s for s in scalars if any(math.isfinite(r["scalars"].get(s, math.nan)) for r in runs)]
    head = "".join(f"<th>{esc(k)}</th>" for k in ["part", *keys, "seeds", "status", *shown])
    body = []
    for rs in groups.values():
        first = rs[0]
        cells = [esc(first["part"])] + [esc(first["point"].get(k, "")) for k in keys]
        statuses: dict[str, int] = {}
        for r in rs:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        cells += [str(len(rs)), esc(", ".join(f"{k} {v}" for k, v in statuses.items()))]
        for s in shown:
            vs = [r["scalars"].get(s, math.nan) for r in rs]
            fin = [v for v in vs if not math.isnan(v)]
            if not fin:
                cells.append("n/a")
                continue
            mean = sum(fin) / len(fin) if all(math.isfinite(v) for v in fin) else max(fin)
            spread = (
                f" <small>[{number(min(fin))}, {number(max(fin))}]</small>" if len(fin) > 1 else ""
            )
            cells.append(number(mean) + spread)
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def setup_html(spec: Mapping[str, Any], manifest: Mapping[str, Any]) -> str:
    out = []
    for p in spec["parts"]:
        axes = "; ".join(
            f"{kind} {json.dumps(body, default=str)}" for a in p["axes"] for kind, body in a.items()
        )
        out.append(
            f"<h3>part <code>{esc(p['name'])}</code>: run kind <code>{esc(p['run'])}</code></h3>"
            f"<p>axes: <code>{esc(axes or 'none')}</code><br>seeds: {esc(p['seeds'])}"
            + (f"<br>after training: {esc(', '.join(p['after']))}" if p["after"] else "")
            + f"</p><details><summary>base config</summary><pre>"
            f"{esc(json.dumps(p['base'], indent=1, default=str))}</pre></details>"
        )
    where = manifest.get("executor", "")
    seconds = manifest.get("seconds")
    timing = (
        f"; the run that produced it (this study and any run with it) took {seconds:.0f} s"
        if isinstance(seconds, (int, float))
        else ""
    )
    out.append(f"<p>scale: {esc(spec.get('scale', ''))}; executor: {esc(where)}{timing}.</p>")
    return "".join(out)


def study_page(manifest: Mapping[str, Any], figures: Sequence[tuple[str, bytes]]) -> str:
    """The HTML page of one study (figures as ``(caption, png)``)."""
    spec, a = manifest["spec"], manifest["analysis"]
    counts = ", ".join(f"{k}: {v}" for k, v in a["counts"].items())
    figs = "".join(
        f'<figure><img alt="{esc(caption)}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode()}"><figcaption>{esc(caption)}</figcaption></figure>'
        for caption, png in figures
    )
    scalar_names = [*spec["scalars"], "final_loss", "diverged"]
    quantities = "".join(
        f'<tr><td><code>{esc(k)}</code></td><td class="num">{number(v)}</td></tr>'
        for k, v in a["quantities"].items()
    )
    body = (
        f'<p><a href="index.html">&larr; all studies</a></p>'
        f"<h1>{esc(spec.get('title') or spec['name'])}</h1>"
        f"<p>{badge(a['verdict'])} &nbsp; {esc(a['reason'])}</p>"
        f'<h2>Claim</h2><p class="claim">{esc(spec["claim"])}</p>'
        f"<p>Source: {esc(spec['source'])}</p>"
        f"<h2>Verdict and criterion</h2><p>Criterion: <code>{esc(a['criterion'])}</code></p>"
        f"{checks_table(a['checks'])}"
        f"<h2>Setup</h2>{setup_html(spec, manifest)}<p>{esc(spec.get('notes', ''))}</p>"
        f"<p>runs: {esc(counts)}</p>"
        f"<h2>Figures</h2>{figs or '<p>no figures</p>'}"
        f"<h2>Numbers</h2><h3>Quantities</h3><table>{quantities}</table>"
        f"<h3>Per point (seed mean, [min, max] over seeds)</h3>"
        f"{points_table(a['runs'], scalar_names)}"
    )
    return page(f"resnorm study: {spec['name']}", body)


def index_page(manifests: Sequence[Mapping[str, Any]]) -> str:
    """The index over every analysed study."""
    rows = []
    for m in manifests:
        spec, a = m["spec"], m["analysis"]
        rows.append(
            f'<tr><td><a href="{esc(spec["name"])}.html">{esc(spec["name"])}</a></td>'
            f"<td>{badge(a['verdict'])}</td><td>{esc(spec['claim'])}<br>"
            f"<small>{esc(spec['source'])}</small></td><td><code>{esc(a['criterion'])}</code></td>"
            f"<td>{esc(spec.get('scale', ''))}</td></tr>"
        )
    body = (
        "<h1>resnorm: studies of residual and normalization topologies</h1>"
        "<p>Each study tests a published claim; its verdict is computed from the measurements "
        "by the criterion shown. A claim that did not reproduce is reported with its numbers."
        "</p><table><tr><th>study</th><th>verdict</th><th>claim</th><th>criterion</th>"
        f"<th>scale</th></tr>{''.join(rows)}</table>"
    )
    return page("resnorm studies", body)
