"""Helpers of the report tests: study manifests written by hand (the tiny study's manifest, runs
and store unchanged, in the new format: the paper beside each check, protocol, departures,
headline, overrides, figure captions and reference lines; and stripped to the old one), and
headless Chromium on a page."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

SOURCE = "Xiong et al. 2020, On Layer Normalization in the Transformer (arXiv:2002.04745)"
PAPER = (
    ("W2 gradient of Pre-LN shrinks with depth; Post-LN's grows with layer index", "Fig. 3"),
    ("training loss falls below the unigram loss within the first epoch", "Table 1"),
)
DEPARTURE = {"what": "width 16 instead of 512", "why": "two CPU cores"}
WHY = "This run departs from the paper's protocol where CPU scale forces it: width 16."
HEADLINE = "0.202 (0.11 to 0.29, 95% t, 2 seeds)"


def new_format(m: dict[str, Any], name: str = "tiny", figure: int = 1) -> dict[str, Any]:
    """The tiny study's manifest with every field the report reads, written by hand."""
    m = copy.deepcopy(m)
    s, a = m["spec"], m["analysis"]
    s.update(
        name=name,
        title=f"A tiny study ({name})",
        source=SOURCE,
        protocol={
            "mirrors": "A Post-LN and a Pre-LN Transformer at init, as in Sec. 3.",
            "init": "Xavier uniform",
            "width": "d = 16 (the paper: 512)",
        },
        departures=[DEPARTURE],
        overrides={"model.d_model": 16},
        headline={"figure": figure, "check": 0},
    )
    for c, sc, (reports, where) in zip(a["checks"], s["checks"], PAPER, strict=True):
        c["paper"] = sc["paper"] = {"reports": reports, "where": where}
    a["checks"][0].update(
        effect={"name": "pre", "mean": 0.202, "lo": 0.11, "hi": 0.29, "n": 2, "seeds": [0, 1]},
        sentence=f"holds: a gradient reaches W2; pre = {HEADLINE}. The paper: {PAPER[0][0]}",
    )
    a["checks"][1]["informational"] = s["checks"][1]["informational"] = True
    a.update(
        verdict="not reproduced", headline={"text": HEADLINE, "label": "pre", "check": 0}, why=WHY
    )
    s["figures"][1].update(
        caption="Look at the slope of pre_ln against depth.",
        hlines=[{"y": 0.01, "label": "threshold 0.01"}],
        slopes=[{"slope": -0.5, "label": "L^-1/2"}],
    )
    return m


def old_format(m: dict[str, Any]) -> dict[str, Any]:
    """The manifest as written before the paper, protocol and headline fields existed."""
    m = copy.deepcopy(m)
    s, a = m["spec"], m["analysis"]
    for key in ("protocol", "departures", "overrides", "headline"):
        s.pop(key, None)
    for c in s["checks"]:
        for key in ("paper", "effect", "unit", "min_pass"):
            c.pop(key, None)
    for f in s["figures"]:
        for key in ("caption", "hlines", "slopes"):
            f.pop(key, None)
    for key in ("headline", "why"):
        a.pop(key, None)
    for c in a["checks"]:
        for key in ("paper", "effect", "k", "n", "sentence"):
            c.pop(key, None)
    return m


def lab_with(lab: Path, folder: Path, *manifests: dict[str, Any]) -> Path:
    """A copy of ``lab`` (its store) whose studies are ``manifests``, with no report yet."""
    shutil.copytree(lab, folder, ignore=shutil.ignore_patterns("report", "studies"))
    (folder / "studies").mkdir()
    for m in manifests:
        (folder / "studies" / f"{m['spec']['name']}.json").write_text(json.dumps(m))
    return folder


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("headless Chromium is needed: apt-get install -y chromium")


def browse(page: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """Chromium, headless, on a local page; stderr carries the page's console messages."""
    args = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        *flags,
        page.as_uri(),
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def console(stderr: str) -> list[str]:
    """The page's console messages and uncaught errors in Chromium's log."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
