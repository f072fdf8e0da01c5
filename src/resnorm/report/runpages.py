"""The pages of training runs: one page per run (``runs/<run id>.html``: config against the
lab's typical config, status and why, precision and why, loss curves, per-layer diagnostics over
training, events), a table of the runs for the index, and the comparison page
(``compare.html``: the chosen runs' loss curves overlaid and the config fields that differ).

Runs are summarised as `resnorm runs list` does (`resnorm.runs`), so the two agree.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from resnorm.report.html import esc, image, number, page
from resnorm.report.runfigures import topology
from resnorm.runs import RUN_COLUMNS, config_diff, flatten, list_rows
from resnorm.store import Event, RunRecord

_STATUS = {"completed": "pass", "failed": "fail", "diverged": "fail", "stuck": "missing"}


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if stamp else "-"


def runs_table(records: Sequence[RunRecord], href: str = "runs/") -> str:
    """The runs as `resnorm runs list` prints them, each id linking to its page."""
    rows = list_rows(records)
    head = "".join(f"<th>{esc(c)}</th>" for c in (*RUN_COLUMNS, "config vs typical"))
    body = []
    for r, row in zip(records, rows, strict=True):
        cells = [f'<a href="{href}{esc(r.run_id)}.html"><code>{esc(r.run_id)}</code></a>']
        cells.append(_status_word(r))
        cells += [esc(c) for c in row[2:5]]
        cells += [f'<span class="num">{esc(c)}</span>' for c in row[5:7]]
        cells += [esc(row[7]), f"<code>{esc(row[8])}</code>"]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table>\n<tr>{head}</tr>\n" + "\n".join(body) + "\n</table>"


def _status_word(record: RunRecord) -> str:
    cls = _STATUS.get(record.status, "info")
    return f'<span class="{cls}" title="{esc(record.detail)}">{esc(record.status)}</span>'


def runs_section(records: Sequence[RunRecord]) -> str:
    """The index's section on training runs: the table and a link to the comparison page."""
    return (
        f"<h2>Training runs ({len(records)})</h2><p>Runs trained with <code>resnorm train</code>: "
        "each id links to the run's page (loss curves, per-layer diagnostics over training, "
        'events); <a href="compare.html">compare</a> overlays their loss curves. Config vs '
        "typical: the fields that differ from the most common value across these runs.</p>"
        + runs_table(records)
    )


def _config_rows(config: Mapping[str, Any], typical: Mapping[str, Any]) -> str:
    diff = set(config_diff(config, typical))
    rows = []
    for k, v in flatten(config).items():
        text = json.dumps(v, default=str)
        mark = (
            ' class="informational"' if f"{k}={json.dumps(v, sort_keys=True)}" not in diff else ""
        )
        rows.append(
            f"<tr{mark}><td><code>{esc(k)}</code></td><td><code>{esc(text)}</code></td></tr>"
        )
    return "<table><tr><th>field</th><th>value</th></tr>" + "".join(rows) + "</table>"


def _events(events: Sequence[Event]) -> str:
    if not events:
        return "<p>(no events)</p>"
    rows = "".join(
        f"<tr><td style='white-space:nowrap'>{esc(_when(e.time))}</td>"
        f"<td class='num'>{esc('-' if e.step is None else e.step)}</td>"
        f"<td>{esc(e.kind)}</td><td>{esc(e.message)}</td></tr>"
        for e in events
    )
    return f"<table><tr><th>time</th><th>step</th><th>kind</th><th>message</th></tr>{rows}</table>"


def _summary(record: RunRecord) -> str:
    s = record.summary or {}
    keys = [k for k in ("step", "loss", "val_loss", "val_accuracy", "val_exact_match",
                        "unigram_loss", "uniform_loss", "grad_norm", "tokens_per_s")
            if k in s]  # fmt: skip
    cells = "".join(f"<tr><td>{esc(k)}</td><td class='num'>{number(s[k])}</td></tr>" for k in keys)
    return f"<table><tr><th>final</th><th>value</th></tr>{cells}</table>" if cells else ""


def _shape(record: RunRecord) -> str:
    """What was trained: ``4 layers`` (a decoder), ``encoder, 4 layers, mlm`` or
    ``encoder_decoder, 4 + 6 layers, seq2seq``."""
    model, data = record.config.get("model", {}), record.config.get("data", {})
    kind, n = model.get("kind", "decoder"), model.get("n_layers", "?")
    if kind == "decoder":
        return f"{n} layers"
    if kind == "encoder_decoder":
        n = f"{n} + {model.get('n_decoder_layers') or n}"
    return f"{kind}, {n} layers, {data.get('objective', '?')}"


def run_page(
    record: RunRecord,
    typical: Mapping[str, Any],
    events: Sequence[Event],
    loss_png: bytes | None,
    layers_png: bytes | None,
) -> str:
    """One training run's page (figures inlined)."""
    env = record.environment or {}
    train = record.config.get("train", {})
    steps = (record.summary or {}).get("step", 0)
    diff = config_diff(record.config, typical)
    parent = record.config.get("parent")
    head = (
        f'<p><a href="../index.html">report index</a> &middot; '
        f'<a href="../compare.html">compare runs</a></p>'
        f"<h1>run <code>{esc(record.run_id)}</code>"
        + (f" ({esc(record.name)})" if record.name else "")
        + f"</h1><p class='headline'>{esc(topology(record))}, {esc(_shape(record))}, "
        f"step {esc(steps)}/"
        f"{esc(train.get('steps', '?'))} &nbsp;{_status_word(record)}</p>"
    )
    why = f'<p class="why">{esc(record.status)}: {esc(record.detail)}</p>' if record.detail else ""
    facts = (
        f"<p>precision: <b>{esc(env.get('precision', '-'))}</b> "
        f"({esc(env.get('precision_reason', 'not recorded'))}); device: "
        f"{esc(env.get('device_name') or env.get('device', '-'))}; "
        f"torch {esc(env.get('torch', '-'))}"
        f"<br>created {esc(_when(record.created_at))}, started {esc(_when(record.started_at))}, "
        f"finished {esc(_when(record.finished_at))}"
        + (
            f'<br>parent: <a href="{esc(parent)}.html"><code>{esc(parent)}</code></a>'
            if parent
            else ""
        )
        + "</p>"
    )
    config = (
        "<h2>Config</h2><p>Against the lab's typical config: "
        f"<code>{esc(' '.join(diff) or '(typical)')}</code>. Fields at the typical value are "
        "greyed.</p><details><summary>resolved config</summary>"
        f"{_config_rows(record.config, typical)}</details>"
    )
    loss = "<h2>Loss</h2>" + (
        f"<figure>{image(loss_png, 'train and validation loss against step')}<figcaption>Train "
        "loss (line) at each logged step and validation loss (dashed, markers) at each "
        "evaluation; dotted: the data's unigram loss, what a model that ignores context "
        f"scores.</figcaption></figure>{_summary(record)}"
        if loss_png
        else "<p>(no loss logged)</p>"
    )
    layers = "<h2>Per-layer diagnostics over training</h2>" + (
        f"<figure>{image(layers_png, 'per-layer diagnostics, layers by steps')}<figcaption>One "
        "heatmap per probe the run logged: layer (1 at the bottom) against the step it was "
        "taken at; the module each probe is read at is in its title. `resnorm runs show` lists "
        "the rest.</figcaption></figure>"
        if layers_png
        else "<p>(no per-layer probe logged: set <code>train.probe_every</code>)</p>"
    )
    body = head + why + facts + loss + layers + config + "<h2>Events</h2>" + _events(events)
    return page(f"run {record.run_id}", body)


def differing_fields(records: Sequence[RunRecord]) -> list[tuple[str, list[str]]]:
    """``(field, value per run)`` of each config field whose value is not the same in all runs
    (labels such as ``name`` and ``lab`` left out)."""
    flats = [flatten(r.config) for r in records]
    keys = list(dict.fromkeys(k for f in flats for k in f))
    out = []
    for k in keys:
        if k.split(".")[0] in ("name", "lab"):
            continue
        values = [json.dumps(f[k], sort_keys=True, default=str) if k in f else "-" for f in flats]
        if len(set(values)) > 1:
            out.append((k, values))
    return out


def compare_page(
    records: Sequence[RunRecord], labels: Mapping[str, str], figure: bytes, chosen: bool
) -> str:
    """The comparison page: the runs' loss curves overlaid, their final losses and the config
    fields that differ between them."""
    ids = "".join(
        f'<th><a href="runs/{esc(r.run_id)}.html">{esc(labels[r.run_id])}</a></th>' for r in records
    )
    fields = differing_fields(records)
    diff_rows = "".join(
        f"<tr><td><code>{esc(k)}</code></td>"
        + "".join(f"<td><code>{esc(v)}</code></td>" for v in values)
        + "</tr>"
        for k, values in fields
    )
    numbers = (("steps", "step"), ("train loss", "loss"), ("validation loss", "val_loss"))
    final = "<tr><td>status</td>" + "".join(f"<td>{_status_word(r)}</td>" for r in records)
    rs = records
    final += "</tr>" + "".join(
        f"<tr><td>{esc(name)}</td>"
        + "".join(f"<td class='num'>{number((r.summary or {}).get(key, '-'))}</td>" for r in rs)
        + "</tr>"
        for name, key in numbers
    )
    which = "the runs chosen with <code>--runs</code>" if chosen else "every training run"
    body = (
        '<p><a href="index.html">report index</a></p>'
        f"<h1>Comparing {len(records)} runs</h1><p>Loss curves of {which} of the lab, one colour "
        "per topology as in the rest of the report (a second run of a topology: another line "
        "style). Clicking a run's name opens its page.</p>"
        f"<figure>{image(figure, 'loss curves of the runs compared')}<figcaption>Left: train loss "
        "at each logged step; right: validation loss at each evaluation.</figcaption></figure>"
        f"<h2>Final numbers</h2><table><tr><th></th>{ids}</tr>{final}</table>"
        "<h2>Config fields that differ</h2>"
        + (
            f"<table><tr><th>field</th>{ids}</tr>{diff_rows}</table>"
            if fields
            else "<p>(the runs share one config)</p>"
        )
    )
    return page("resnorm: compare runs", body)


__all__ = ["compare_page", "differing_fields", "run_page", "runs_section", "runs_table"]
