"""The index page, what a person sees first: one card per study with its headline figure as a
thumbnail (linking to the study's page), the verdict with the headline number and its spread,
the claim in one line, its arXiv ids as links, the scale and the number of runs; then the lab's
training runs, if it has any (`resnorm.report.runpages.runs_section`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from resnorm.report.facts import arxiv_ids, headline, run_count
from resnorm.report.html import badge, esc, image, page


def card(manifest: Mapping[str, Any], thumb: bytes | None) -> str:
    """One study's card (``thumb``: its headline figure as a small PNG, if it has one)."""
    spec, a = manifest["spec"], manifest["analysis"]
    name = esc(spec["name"])
    picture = (
        image(thumb, f"headline figure of {spec['name']}", "thumb")
        if thumb
        else '<div class="nothumb">no figure</div>'
    )
    h = headline(manifest)
    number = f" &nbsp;<b>{esc(h.text)}</b>" if h else ""
    what = (
        f'<p class="oneline meta" title="{esc(h.what)}">headline: {esc(h.what)}</p>'
        if h and h.what
        else ""
    )
    links = ", ".join(
        f'<a href="https://arxiv.org/abs/{esc(i)}">arXiv:{esc(i)}</a>'
        for i in arxiv_ids(spec.get("source", ""))
    )
    runs = run_count(manifest)
    meta = " &middot; ".join(
        x
        for x in (links, f"scale {esc(spec.get('scale', ''))}", f"{runs} run{'s' * (runs != 1)}")
        if x
    )
    return (
        f'<article class="card"><a href="{name}.html">{picture}</a>'
        f'<h2><a href="{name}.html">{esc(spec.get("title") or spec["name"])}</a></h2>'
        f"<p>{badge(a['verdict'])}{number}</p>{what}"
        f'<p class="oneline" title="{esc(spec["claim"])}">{esc(spec["claim"])}</p>'
        f'<p class="meta">{meta}</p></article>'
    )


def index_page(
    manifests: Sequence[Mapping[str, Any]],
    thumbs: Mapping[str, bytes] | None = None,
    runs: str = "",
) -> str:
    """The index over every analysed study (``thumbs``: headline thumbnails by study name) and
    the training runs (``runs``: their section's HTML)."""
    if not manifests:
        intro = (
            "<h1>resnorm: training runs</h1><p>This lab holds no study yet (<code>resnorm study "
            "run NAME</code> adds one); its training runs follow.</p>"
        )
        return page("resnorm runs", intro + runs)
    thumbs = thumbs or {}
    cards = "".join(card(m, thumbs.get(m["spec"]["name"])) for m in manifests)
    body = (
        "<h1>resnorm: studies of residual and normalization topologies</h1>"
        "<p>Each study tests a published claim under the paper's protocol, at the scale shown; "
        "its verdict is computed from the measurements by the study's criterion, and its page "
        "sets each number beside the paper's. A claim that did not reproduce is reported with "
        'its numbers and why it may differ. <a href="summary.md">summary.md</a> has the same '
        f'in Markdown.</p><div class="cards">{cards}</div>{runs}'
    )
    return page("resnorm studies", body)


__all__ = ["card", "index_page"]
