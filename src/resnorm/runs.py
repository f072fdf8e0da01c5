"""The runs of a lab, for people: find one by id, list them, show one in full.

``resnorm runs list [--lab DIR]`` prints one line per run: id, status, topology, depth, steps,
final losses, start time, and how its config differs from the lab's typical config (the most
common value of every field across the lab's runs, so a depth sweep shows ``model.n_layers=24``
and nothing else). ``resnorm runs show RUN`` prints one run: resolved config, environment
(precision and why first), a summary of every metric and the event log.

A run is named by its id or by any unique prefix of it (as git names commits).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from resnorm.errors import ConfigError
from resnorm.store import RunRecord, Store
from resnorm.store.schema import DB_NAME

#: Fields left out of config diffs: labels, not what a run computes.
_LABELS = ("name", "lab")
_ABSENT = "\0absent"  # no JSON text is this
#: The widest config diff shown in a `runs list` row.
DIFF_WIDTH = 48


def open_lab(lab: str | Path) -> Store:
    """The lab's store, read-only; ConfigError (``--lab``) if there is none."""
    if not (Path(lab) / DB_NAME).is_file():
        raise ConfigError("--lab", f"no resnorm lab at {str(lab)!r} (no {DB_NAME} there)")
    return Store(lab, readonly=True)


def find_run(store: Store, text: str, field: str = "run") -> RunRecord:
    """The run whose id is ``text`` or starts with it (a unique prefix)."""
    record = store.get_run(text) if text else None
    if record is not None:
        return record
    matches = [r for r in store.runs() if text and r.run_id.startswith(text)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        ids = ", ".join(r.run_id for r in matches[:5])
        raise ConfigError(field, f"{text!r} is the prefix of several runs ({ids}); give more of it")
    raise ConfigError(
        field, f"no run {text!r} in the lab {str(store.folder)!r} (`resnorm runs list` lists them)"
    )


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"d_model": 64}}`` -> ``{"model.d_model": 64}`` (lists kept as values)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def typical_config(configs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The most common value of each dotted field (ties: the first run's value); a field most
    runs lack (such as ``parent``) is left out."""
    flats = [flatten(cfg) for cfg in configs]
    keys = list(dict.fromkeys(k for flat in flats for k in flat))
    out: dict[str, Any] = {}
    for k in keys:
        counts = Counter(_key(flat[k]) if k in flat else _ABSENT for flat in flats)
        value = counts.most_common(1)[0][0]
        if value != _ABSENT:
            out[k] = json.loads(value)
    return out


def config_diff(config: Mapping[str, Any], typical: Mapping[str, Any]) -> list[str]:
    """``field=value`` for each field of ``config`` that differs from ``typical``."""
    flat = flatten(config)
    out = []
    for k in sorted(set(flat) | set(typical)):
        if k.split(".")[0] in _LABELS:
            continue
        if k not in flat:
            out.append(f"-{k}")
        elif k not in typical or _key(flat[k]) != _key(typical[k]):
            out.append(f"{k}={_key(flat[k])}")
    return out


def _number(value: Any) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or value == 0 or abs(value) >= 0.01:
            return f"{value:.4f}" if math.isfinite(value) else str(value)
        return f"{value:.3e}"  # a learning rate
    return "-"


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if stamp else "-"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    head = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    return "\n".join(line.rstrip() for line in [head, *lines])


RUN_COLUMNS = ("run", "status", "topology", "depth", "steps", "loss", "val_loss", "started")


def _topology(model: Mapping[str, Any]) -> str:
    topology = model.get("topology", "?")
    return str(topology.get("name", "?") if isinstance(topology, Mapping) else topology)


def list_rows(records: Sequence[RunRecord]) -> list[list[str]]:
    """One row per run: `RUN_COLUMNS` then the config diff against the lab's typical config."""
    typical = typical_config([r.config for r in records])
    rows = []
    for r in records:
        model, train = r.config.get("model", {}), r.config.get("train", {})
        summary = r.summary or {}
        diff = " ".join(config_diff(r.config, typical)) or "(typical)"
        if len(diff) > DIFF_WIDTH:
            diff = diff[: DIFF_WIDTH - 3] + "..."
        steps = f"{summary.get('step', 0)}/{train.get('steps', '?')}"
        rows.append([
            r.run_id, r.status, _topology(model),
            str(model.get("n_layers", "?")), steps, _number(summary.get("loss")),
            _number(summary.get("val_loss")), _when(r.started_at or r.created_at), diff,
        ])  # fmt: skip
    return rows


def list_runs(lab: str | Path) -> str:
    """The `resnorm runs list` table of ``lab`` (oldest run first)."""
    with open_lab(lab) as store:
        records = sorted(store.runs(), key=lambda r: r.created_at)
    if not records:
        return f"no runs in {lab}"
    return table((*RUN_COLUMNS, "config vs typical"), list_rows(records))


def _metrics_summary(store: Store, run_id: str) -> list[list[str]]:
    by_name: dict[str, list[tuple[int, float]]] = {}
    for m in store.metrics(run_id):
        by_name.setdefault(m.name, []).append((m.step, m.value))
    rows = []
    for name, points in sorted(by_name.items()):
        finite = [p for p in points if math.isfinite(p[1])]
        best = min(finite, key=lambda p: p[1]) if finite else None
        rows.append([
            name, str(len(points)), _number(points[0][1]), _number(points[-1][1]),
            f"{_number(best[1])} @ {best[0]}" if best else "-", str(points[-1][0]),
        ])  # fmt: skip
    return rows


def show_run(run: str, lab: str | Path) -> str:
    """The `resnorm runs show` text of one run."""
    with open_lab(lab) as store:
        r = find_run(store, run)
        metrics = _metrics_summary(store, r.run_id)
        events = store.events(r.run_id)
    env = dict(r.environment or {})
    label = (f" ({r.name})" if r.name else "") + (f", study {r.study}" if r.study else "")
    out = [
        f"run {r.run_id}{label}",
        f"status: {r.status}" + (f": {r.detail}" if r.detail else ""),
        f"parent: {r.config.get('parent') or '-'}",
        f"created {_when(r.created_at)}, started {_when(r.started_at)}, finished "
        f"{_when(r.finished_at)}",
        f"precision: {env.pop('precision', '-')} ({env.pop('precision_reason', 'not recorded')})",
        "",
        "config:",
        *(f"  {k} = {_key(v)}" for k, v in flatten(r.config).items()),
        "",
        "environment:",
        *(f"  {k} = {_key(v)}" for k, v in flatten(env).items() if k.split(".")[0] != "data"),
        *(f"  {k} = {_key(v)}" for k, v in flatten(env).items() if k.startswith("data.")
          and not k.startswith("data.files")),
        "",
        "metrics:",
    ]  # fmt: skip
    if metrics:
        header = ("name", "points", "first", "last", "min @ step", "last step")
        out += ["  " + line for line in table(header, metrics).splitlines()]
    else:
        out.append("  (none)")
    out += ["", "events:"]
    out += [f"  {_when(e.time)}  step {e.step if e.step is not None else '-'}  {e.kind}: "
            f"{e.message}" for e in events] or ["  (none)"]  # fmt: skip
    return "\n".join(out)


# --- `resnorm runs` -----------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``resnorm runs list [--lab DIR]`` and ``resnorm runs show RUN [--lab DIR]``."""
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("list", help="one line per run of the lab")
    p.add_argument("--lab", default="lab", metavar="DIR", help="lab folder (default: lab)")
    p = sub.add_parser("show", help="one run: config, environment, metrics, events")
    p.add_argument("run", metavar="RUN", help="run id (or a unique prefix)")
    p.add_argument("--lab", default="lab", metavar="DIR", help="lab folder (default: lab)")


def run(args: argparse.Namespace) -> int:
    """Run ``resnorm runs ...``; ConfigErrors reach `resnorm.cli.main` (one line, exit 2)."""
    print(list_runs(args.lab) if args.action == "list" else show_run(args.run, args.lab))
    return 0
