"""The HTML pieces every page of the report shares: the style sheet, the page frame, numbers,
badges, links to arXiv, inlined PNGs, the setup and the per-point table. The pages themselves
are in `resnorm.report.study` and `resnorm.report.index`; each is self-contained (figures
inlined as base64 PNG, CSS inline, no external resource; links out go to arXiv only).

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

from resnorm.report.facts import arxiv_split

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
figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.9em;color:#333;max-width:60em}
code,pre{background:#f6f8fa;font-size:.85em}td code,small code{font-size:inherit}
pre{padding:.6em;overflow-x:auto}
.claim{font-size:1.05em;border-left:4px solid #888;padding-left:.8em}
.headline{font-size:1.15em;font-weight:600;margin:.6em 0}.headline small{font-weight:400;color:#555}
tr.informational td{color:#666;background:#fafafa}
.tag{display:inline-block;font-size:.8em;padding:0 .4em;border-radius:.3em;background:#e6e8eb;
color:#444}
.seed{display:inline-block;min-width:1.3em;text-align:center;font-size:.8em;margin:1px;
border-radius:.25em;color:#fff}
.seed.pass{background:#2a8a4a}.seed.fail{background:#b8322c}.seed.missing{background:#a77400}
.why{background:#fff8e6;border-left:4px solid #a77400;padding:.5em .8em}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:1.2em}
.card{border:1px solid #ddd;border-radius:.5em;padding:.8em;overflow:hidden}
.card h2{border:0;margin:.2em 0;font-size:1.1em}
.card img.thumb{width:100%;height:240px;object-fit:contain;background:#fff;border:1px solid #eee}
.card .nothumb{height:240px;display:flex;align-items:center;justify-content:center;color:#888;
border:1px solid #eee}
.oneline{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;margin:.3em 0}
.meta{font-size:.85em;color:#555;margin:.2em 0}
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


def linked(text: str) -> str:
    """Escaped text whose ``arXiv:NNNN.NNNNN`` citations link to their abstract pages."""
    return "".join(
        esc(t) if i is None else f'<a href="https://arxiv.org/abs/{esc(i)}">{esc(t)}</a>'
        for t, i in arxiv_split(text)
    )


def image(png: bytes, alt: str, cls: str = "") -> str:
    """An ``<img>`` with the PNG inlined."""
    data = base64.b64encode(png).decode()
    klass = f' class="{cls}"' if cls else ""
    return f'<img{klass} alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width"><title>{esc(title)}</title>'
        f'<style>{CSS}</style></head><body data-figures="pending">\n{body}\n{SCRIPT}'
        "</body></html>\n"
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


def _axes(text: str) -> str:
    """A part's axes; a long list of points folded away (the points table shows them)."""
    if len(text) <= 240:
        return f"axes: <code>{esc(text or 'none')}</code>"
    return f"<details><summary>axes</summary><code>{esc(text)}</code></details>"


def setup_html(spec: Mapping[str, Any], manifest: Mapping[str, Any]) -> str:
    """Each part's run kind, axes, seeds and base config; the scale, executor and time."""
    out = []
    for p in spec["parts"]:
        axes = "; ".join(
            f"{kind} {json.dumps(body, default=str)}"
            for a in p.get("axes") or []
            for kind, body in a.items()
        )
        out.append(
            f"<h3>part <code>{esc(p['name'])}</code>: run kind <code>{esc(p['run'])}</code></h3>"
            f"<p>{_axes(axes)}<br>seeds: {esc(p.get('seeds'))}"
            + (f"<br>after training: {esc(', '.join(p['after']))}" if p.get("after") else "")
            + f"</p><details><summary>base config</summary><pre>"
            f"{esc(json.dumps(p.get('base', {}), indent=1, default=str))}</pre></details>"
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
