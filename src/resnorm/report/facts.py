"""What the report reads from a study manifest, old format or new: each check beside the
paper's number, effect sizes with their spread, seeds held, the headline, the arXiv ids.

A manifest written before a field existed lacks it; every accessor here then returns ``None``
(or an empty value) and the page leaves that section out, so an old lab still renders.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_ARXIV = re.compile(r"arXiv:\s*(\d{4}\.\d{4,5})(v\d+)?", re.IGNORECASE)

#: The verdict sentence (written by the analysis) opens with the check's word and label and ends
#: with what the paper reports; the table shows those in their own columns, so its "we measure"
#: cell keeps the middle: our number with its spread, the seeds, the distance to the threshold.
_PAPER_TAIL = re.compile(r"[.;]\s+the paper:.*$", re.IGNORECASE | re.DOTALL)
_OPENING = ("holds: ", "fails: ", "undecided: ", "reproduced: ", "not reproduced: ")


def arxiv_ids(text: str) -> list[str]:
    """The arXiv ids cited as ``arXiv:NNNN.NNNNN`` in a text, in order, once each."""
    return list(dict.fromkeys(m.group(1) for m in _ARXIV.finditer(text or "")))


def arxiv_split(text: str) -> list[tuple[str, str | None]]:
    """``text`` as pieces ``(text, None)`` and ``(matched, id)`` for each arXiv citation."""
    out: list[tuple[str, str | None]] = []
    at = 0
    for m in _ARXIV.finditer(text or ""):
        out.append((text[at : m.start()], None))
        out.append((m.group(0), m.group(1)))
        at = m.end()
    out.append(((text or "")[at:], None))
    return [(t, i) for t, i in out if t]


def measured(sentence: str, label: str) -> str:
    """What we measure, from a verdict sentence: without its opening word and label and without
    its paper tail."""
    text = _PAPER_TAIL.sub("", sentence).strip()
    for word in _OPENING:
        if text.startswith(word):
            rest = text[len(word) :]
            if rest == label:
                return ""
            if label and rest.startswith(f"{label}; "):
                return rest[len(label) + 2 :]
            return rest
    return text


@dataclass(frozen=True)
class CheckView:
    """One check as the report shows it (every field optional but ``expr`` and ``result``)."""

    label: str
    expr: str
    result: str
    informational: bool
    values: Mapping[str, Any]
    paper_reports: str
    paper_where: str
    measured: str  # the verdict sentence's middle (see `measured`), "" in an older manifest
    effect_name: str
    k: int | None  # seeds on which it held
    n: int | None  # seeds measured
    min_pass: int | None
    per_seed: Sequence[Mapping[str, Any]]
    note: str


def check_views(manifest: Mapping[str, Any]) -> list[CheckView]:
    """Each check of the analysis, with the spec's paper, unit and ``min_pass`` beside it."""
    spec_checks = manifest["spec"].get("checks") or []
    out = []
    for i, c in enumerate(manifest["analysis"].get("checks") or []):
        s: Mapping[str, Any] = spec_checks[i] if i < len(spec_checks) else {}
        paper = c.get("paper") or s.get("paper") or {}
        effect = c.get("effect") or {}
        per = c.get("per_seed") or []
        k, n = c.get("k"), c.get("n")
        if k is None and per:
            k, n = sum(p.get("result") == "pass" for p in per), len(per)
        label = str(c.get("label") or s.get("label") or "")
        out.append(
            CheckView(
                label=label,
                expr=str(c.get("expr", "")),
                result=str(c.get("result", "missing")),
                informational=bool(c.get("informational")),
                values=c.get("values") or {},
                paper_reports=str(paper.get("reports") or ""),
                paper_where=str(paper.get("where") or ""),
                measured=measured(str(c.get("sentence") or ""), label or str(c.get("expr", ""))),
                effect_name=str(effect.get("name") or s.get("effect") or ""),
                k=None if k is None else int(k),
                n=None if n is None else int(n),
                min_pass=int(s["min_pass"]) if s.get("min_pass") else None,
                per_seed=per,
                note=str(c.get("note") or ""),
            )
        )
    return out


def has_paper(views: Sequence[CheckView]) -> bool:
    return any(v.paper_reports or v.paper_where for v in views)


@dataclass(frozen=True)
class Headline:
    """The study's headline number with its spread, and the check it comes from."""

    text: str
    what: str  # the effect's name or the check's label


def headline(manifest: Mapping[str, Any]) -> Headline | None:
    h = manifest["analysis"].get("headline")
    if not isinstance(h, Mapping) or not h.get("text"):
        return None
    views = check_views(manifest)
    i = h.get("check")
    what = str(h.get("label") or "")
    if isinstance(i, int) and 0 <= i < len(views):
        # the check in words reads better than the effect's quantity name (post_over_pre_6)
        what = views[i].label or what or views[i].effect_name or views[i].expr
    return Headline(str(h["text"]), what)


def headline_figure(spec: Mapping[str, Any]) -> int | None:
    """Index of the study's headline figure: the spec's choice, else its first figure."""
    figures = spec.get("figures") or []
    if not figures:
        return None
    i = (spec.get("headline") or {}).get("figure", 0)
    return i if isinstance(i, int) and 0 <= i < len(figures) else 0


def run_count(manifest: Mapping[str, Any]) -> int:
    return len({r["run_id"] for r in manifest.get("runs") or [] if "run_id" in r})


def seeds_by_part(spec: Mapping[str, Any]) -> list[tuple[str, list[int]]]:
    return [(str(p.get("name", "")), list(p.get("seeds") or [])) for p in spec.get("parts") or []]


__all__ = [
    "CheckView",
    "Headline",
    "arxiv_ids",
    "arxiv_split",
    "check_views",
    "has_paper",
    "headline",
    "headline_figure",
    "measured",
    "run_count",
    "seeds_by_part",
]
