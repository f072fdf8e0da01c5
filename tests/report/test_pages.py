"""The pages: the index shows each study's headline figure and number first; a study page sets
the paper beside each of our checks, links the paper on arXiv, states the protocol's departures;
a manifest written before those fields existed still renders."""

from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path

import pytest
from reportkit import DEPARTURE, HEADLINE, PAPER, WHY, lab_with, new_format, old_format

from resnorm.report import write_report
from resnorm.report.facts import arxiv_ids, measured


@pytest.fixture(scope="module")
def tiny(lab: Path) -> dict:
    return json.loads((lab / "studies" / "tiny.json").read_text())


@pytest.fixture(scope="module")
def new_lab(lab: Path, tiny: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two studies in the new format (headline figures 2 and 1), their report written."""
    two = new_format(tiny, "tiny-two", figure=0)
    folder = lab_with(lab, tmp_path_factory.mktemp("new") / "lab", new_format(tiny), two)
    write_report(folder)
    return folder


def test_arxiv_ids_are_read_from_the_source_text() -> None:
    text = "Vaswani et al. (arXiv:1706.03762v5); Xiong et al. arXiv: 2002.04745, arXiv:1706.03762"
    assert arxiv_ids(text) == ["1706.03762", "2002.04745"]
    assert arxiv_ids("no preprint") == []


def test_we_measure_keeps_the_middle_of_the_verdict_sentence() -> None:
    sentence = "fails: ratio > 2; r = 1.5 (1.1 to 1.9, 95% t, 6 seeds); r = 1.5 is 0.5 below "
    sentence += "the threshold 2. The paper: 3x (Fig. 3)"
    want = "r = 1.5 (1.1 to 1.9, 95% t, 6 seeds); r = 1.5 is 0.5 below the threshold 2"
    assert measured(sentence, "ratio > 2") == want
    assert measured("holds: ratio > 2", "ratio > 2") == ""


def test_the_index_shows_each_studys_thumbnail_verdict_and_headline(new_lab: Path) -> None:
    html = (new_lab / "report" / "index.html").read_text()
    cards = re.findall(r'<article class="card">.*?</article>', html, re.S)
    assert len(cards) == 2
    for card, name in zip(cards, ("tiny-two", "tiny"), strict=True):  # by file name
        thumb = re.search(r'<a href="([^"]+)"><img class="thumb" [^>]*src="data:image/png', card)
        assert thumb and thumb.group(1) == f"{name}.html", "the thumbnail links to the study"
        assert 'class="verdict not-reproduced"' in card and f"<b>{escape(HEADLINE)}</b>" in card
        assert '<a href="https://arxiv.org/abs/2002.04745">arXiv:2002.04745</a>' in card
        assert "scale quick" in card and "12 runs" in card
    thumbs = sorted(p.name for p in (new_lab / "report").glob("*/thumb.png"))
    assert thumbs == ["thumb.png", "thumb.png"]
    # each thumbnail is its study's headline figure: figure 2 (scaling) and figure 1 (layers)
    first, second = (new_lab / "report" / n / "thumb.png" for n in ("tiny", "tiny-two"))
    assert first.read_bytes() != second.read_bytes()
    summary = (new_lab / "report" / "summary.md").read_text()
    assert f"| **not reproduced** | {HEADLINE} |" in summary and PAPER[0][0] in summary


def test_a_study_page_sets_the_paper_beside_each_check(new_lab: Path) -> None:
    html = (new_lab / "report" / "tiny.html").read_text()
    table = re.search(r"<table><tr><th>check</th><th>the paper reports</th>.*?</table>", html)
    assert table, "the paper table"
    rows = re.findall(r"<tr[^>]*><td>.*?</tr>", table.group(0))
    assert len(rows) == 2
    for row, (reports, where) in zip(rows, PAPER, strict=True):
        assert f"<td>{escape(reports)}</td><td>{where}</td>" in row
    assert f"pre = {escape(HEADLINE)}" in rows[0] and "The paper" not in rows[0]
    assert "informational: does not count" in rows[1] and 'class="informational"' in rows[1]
    assert "holds on 2 of 2 seeds" in rows[1]
    assert '<a href="https://arxiv.org/abs/2002.04745">arXiv:2002.04745</a>' in html
    assert escape(DEPARTURE["what"]) in html and escape(DEPARTURE["why"]) in html
    assert escape(WHY) in html and "Why this may differ" in html
    assert "<code>model.d_model = 16</code>" in html and "Seeds: init: 0, 1; train: 0, 1" in html
    assert "Look at the slope" in html and "min-max over the seeds" in html
    # the order a reader meets them: verdict, paper table, protocol, figures, numbers
    at = [
        html.index(s)
        for s in ("headline", "the paper reports", "Protocol", "Figure 1", "Per point")
    ]
    assert at == sorted(at)


def test_a_manifest_without_the_new_fields_still_renders(
    lab: Path, tiny: dict, tmp_path: Path
) -> None:
    folder = lab_with(lab, tmp_path / "lab", old_format(tiny))
    index = write_report(folder)
    html = (folder / "report" / "tiny.html").read_text()
    assert "<th>check</th><th>we measure</th>" in html, "no paper columns"
    for absent in ("the paper reports", "Protocol", "Why this may differ", "Overrides"):
        assert absent not in html
    assert len(re.findall(r"<img ", html)) == 5
    cards = index.read_text()
    assert cards.count('<img class="thumb"') == 1, "the first figure stands in as headline"
    assert "## tiny: " in (folder / "report" / "summary.md").read_text()
