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
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from resnorm.errors import ConfigError
from resnorm.report.facts import headline_figure
from resnorm.report.index import index_page
from resnorm.report.study import study_page
from resnorm.report.summary import summary_markdown


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
    thumbs: dict[str, bytes] = {}
    with Store(lab, readonly=True) as store:
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
    _write(out / "summary.md", summary_markdown(manifests))
    index = out / "index.html"
    _write(index, index_page(manifests, thumbs))
    return index


__all__ = ["study_figures", "summary_markdown", "thumbnail", "write_report"]
