"""The report: self-contained pages whose every figure renders in a real (headless) browser with
no console error, PNGs and a Markdown summary beside them, written without touching the store."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html import escape as html_escape
from pathlib import Path

from reportkit import browse, console

from resnorm.cli import main
from resnorm.report import write_report

ARTIFACTS = Path(__file__).parents[2] / "ci-artifacts"


def test_each_study_page_is_self_contained_with_every_figure_embedded(lab: Path) -> None:
    manifest = json.loads((lab / "studies" / "tiny.json").read_text())
    html = (lab / "report" / "tiny.html").read_text()
    figures = manifest["spec"]["figures"]
    sources = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert len(sources) == len(figures) == 5
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert not re.search(r'src="(https?:)?//|<link ', html), "no external resource"
    claim = html_escape(manifest["spec"]["claim"])
    for text in (manifest["analysis"]["verdict"], claim, "the test suite", "gain &gt; -1"):
        assert text in html
    pngs = sorted(p.name for p in (lab / "report" / "tiny").glob("*.png"))
    assert pngs == [
        *("1-layers.png", "2-scaling.png", "3-heatmap.png", "4-curves.png", "5-bars.png"),
        "thumb.png",
    ]
    summary = (lab / "report" / "summary.md").read_text()
    assert f"## tiny: {manifest['analysis']['verdict']}" in summary
    assert "a gradient reaches W2" in summary
    assert 'href="tiny.html"' in (lab / "report" / "index.html").read_text()


def test_the_report_renders_in_headless_chromium_without_console_errors(lab: Path) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    for page in ("tiny.html", "index.html"):
        dom = browse(lab / "report" / page, "--dump-dom")
        assert dom.returncode == 0, dom.stderr[-2000:]
        n = 5 if page == "tiny.html" else 1  # the index: one thumbnail per study
        assert f'data-figures="rendered {n}/{n}"' in dom.stdout, "a figure did not decode"
        assert console(dom.stderr) == [], console(dom.stderr)
    shot = ARTIFACTS / "report-tiny.png"
    shot.unlink(missing_ok=True)
    done = browse(lab / "report" / "tiny.html", f"--screenshot={shot}", "--window-size=1200,3200")
    assert done.returncode == 0 and shot.stat().st_size > 20_000


def test_the_browser_check_does_see_console_errors_and_broken_figures(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    from resnorm.report.html import page as make_page

    page.write_text(
        make_page(
            "broken",
            "<img src=\"data:image/png;base64,AAAA\"><script>console.error('boom')</script>",
        )
    )
    dom = browse(page, "--dump-dom")
    assert 'data-figures="broken 1/1"' in dom.stdout
    assert any("boom" in line for line in console(dom.stderr))


def test_the_report_command_reads_the_store_without_writing_it(lab: Path) -> None:
    db = lab / "resnorm.sqlite"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    (lab / "report" / "tiny.html").unlink()
    assert main(["report", "--lab", str(lab)]) == 0
    assert (lab / "report" / "tiny.html").exists()
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert write_report(lab) == lab / "report" / "index.html"
