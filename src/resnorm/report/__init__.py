"""The report: figures, a self-contained HTML page per study, an index, PNGs and a Markdown
summary, all written under ``<lab>/report/``.

The report only reads: the study manifests (``<lab>/studies/*.json``, written by the runner with
each study's spec, runs and analysis) and the results store, opened read-only.
``write_report(lab)`` writes::

    <lab>/report/index.html          a card per study: headline figure, verdict, headline number
    <lab>/report/<study>.html        claim, verdict, the paper beside our numbers, protocol,
                                     figures, numbers (self-contained)
    <lab>/report/<study>/<n>-<type>.png, thumb.png
    <lab>/report/summary.md          verdicts, headlines and each check beside the paper
    <lab>/report/runs/<run id>.html  a training run: config, status and why, precision, loss
                                     curves, per-layer diagnostics over training, events
    <lab>/report/compare.html        the chosen runs' loss curves overlaid, config fields that
                                     differ

Training runs (``resnorm train``, not a study's) are listed on the index; a lab may hold only
those, only studies, or both.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from resnorm.errors import ConfigError
from resnorm.report.facts import headline_figure
from resnorm.report.index import index_page
from resnorm.report.study import study_page
from resnorm.report.summary import summary_markdown
from resnorm.store.schema import DB_NAME


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
    """``(caption, png)`` of each figure of a study: the spec's caption (what to look at), then
    what the lines, bands and reference lines show."""
    from resnorm.report.figures import band_note, render

    out = []
    runs = manifest["analysis"]["runs"]
    for spec in manifest["spec"].get("figures") or []:
        png = render(spec, runs, store)
        caption = " ".join(x for x in (spec.get("caption", ""), band_note(spec, runs)) if x)
        out.append((caption, png))
    return out


def thumbnail(manifest: Mapping[str, Any], store: Any) -> bytes | None:
    """The study's headline figure, small, for its card on the index (None: no figure)."""
    from resnorm.report.figures import render

    i = headline_figure(manifest["spec"])
    if i is None:
        return None
    spec = manifest["spec"]["figures"][i]
    return render(spec, manifest["analysis"]["runs"], store, thumb=True)


def _labels(records: Sequence[Any]) -> dict[str, str]:
    """A run's legend label: its topology, with the id's start where topologies repeat (so the
    colour still says the topology and the line style tells the runs apart)."""
    from resnorm.report.runfigures import topology

    counts = Counter(topology(r) for r in records)
    return {
        r.run_id: topology(r) if counts[topology(r)] == 1 else f"{topology(r)} {r.run_id[:8]}"
        for r in records
    }


def write_run_pages(lab: Path, store: Any, runs: Sequence[str] | None = None) -> list[Any]:
    """Write a page per training run and the comparison page (of ``runs``, ids or unique
    prefixes, else of every training run); returns the training runs, oldest first.

    Raises:
        ConfigError: ``--runs`` names no run of the lab, or an ambiguous prefix.
    """
    from resnorm.report.runfigures import compare_figure, layers_figure, loss_figure
    from resnorm.report.runpages import compare_page, run_page
    from resnorm.runs import find_run, typical_config

    trained = sorted((r for r in store.runs() if r.study is None), key=lambda r: r.created_at)
    chosen = [find_run(store, t.strip(), "--runs") for t in runs or [] if t.strip()]
    if runs is not None and not chosen:
        raise ConfigError(
            "--runs", "names no run: give run ids (or unique prefixes), comma-separated"
        )
    chosen = list({r.run_id: r for r in chosen}.values()) or trained
    out = lab / "report"
    typical = typical_config([r.config for r in trained or chosen])
    for r in {r.run_id: r for r in [*trained, *chosen]}.values():
        page = run_page(
            r,
            typical,
            store.events(r.run_id),
            loss_figure(store, r),
            layers_figure(store, r.run_id),
        )
        _write(out / "runs" / f"{r.run_id}.html", page)
    if chosen:
        labels = _labels(chosen)
        figure = compare_figure(store, chosen, labels)
        _write(out / "compare.html", compare_page(chosen, labels, figure, runs is not None))
    return trained


def write_report(
    lab: str | Path = "lab", studies: Sequence[str] | None = None, runs: Sequence[str] | None = None
) -> Path:
    """Write (or refresh) the report of a lab folder; returns the index page's path.

    Args:
        lab: the lab folder.
        studies: redraw only these studies' pages (the index and summary cover every analysed
            study); ``None``: all.
        runs: the runs the comparison page overlays (ids or unique prefixes); ``None``: every
            training run. Every training run gets its page either way.

    Raises:
        ConfigError: if the lab has neither an analysed study nor a run, or ``runs`` names a
            run the lab does not hold.
    """
    from resnorm.report.figures import plt
    from resnorm.report.runpages import runs_section
    from resnorm.store import Store

    lab = Path(lab)
    manifests = _manifests(lab)
    if not manifests and not (lab / DB_NAME).is_file():
        raise ConfigError(
            "lab", f"no analysed study and no run in {str(lab)!r}: train or run a study first"
        )
    out = lab / "report"
    thumbs: dict[str, bytes] = {}
    with Store(lab, readonly=True) as store:
        trained = write_run_pages(lab, store, runs)
        if not manifests and not trained:
            raise ConfigError(
                "lab", f"no analysed study and no run in {str(lab)!r}: train or run a study first"
            )
        for m in manifests:
            name = m["spec"]["name"]
            page_path, thumb_path = out / f"{name}.html", out / name / "thumb.png"
            if studies is not None and name not in studies and page_path.exists():
                if thumb_path.exists():  # an unchanged study keeps the thumbnail drawn with it
                    thumbs[name] = thumb_path.read_bytes()
                continue
            figures = study_figures(m, store)
            specs = m["spec"].get("figures") or []
            for i, (spec, (_, png)) in enumerate(zip(specs, figures, strict=True)):
                _write(out / name / f"{i + 1}-{spec['type']}.png", png)
            thumb = thumbnail(m, store)
            if thumb is not None:
                _write(thumb_path, thumb)
                thumbs[name] = thumb
            _write(page_path, study_page(m, figures))
    plt.close("all")
    if manifests:
        _write(out / "summary.md", summary_markdown(manifests))
    index = out / "index.html"
    _write(index, index_page(manifests, thumbs, runs_section(trained) if trained else ""))
    return index


__all__ = ["study_figures", "summary_markdown", "thumbnail", "write_report", "write_run_pages"]
