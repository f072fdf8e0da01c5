"""One colour per topology across every figure of the report, and a line style per variant.

A series whose label is a registered topology name (``post_ln``) is drawn in that topology's
colour, solid, with round markers, in every figure of every study: the colour comes from the
topology's place in the registry (`resnorm.nn.topologies.TOPOLOGIES`), not from the order the
series happen to appear in one figure. A label that names a topology among other words
(``post_ln, no warmup``, ``admin (profiled omega)``, ``pre_ln, init=xavier``) is a *variant*: the
topology's colour with another line style and marker. Any other label (a skip path, an init) takes
a colour of a second palette, chosen by a hash of the label so that it too is the same in every
figure; two such labels that collide in one figure are moved apart.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache

#: Colours of the topologies, by registry position. tab10 first (the classic comparisons,
#: post_ln / pre_ln / no_residual / sandwich / peri, sit at the front of the registry), then
#: hand-picked colours kept apart from the ones they are compared with in the built-in studies
#: (deepnorm, admin and b2t beside post_ln and pre_ln; tfixup, rezero and no_norm beside pre_ln).
TOPOLOGY_PALETTE: tuple[str, ...] = (
    *("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"),
    *("#bcbd22", "#393b79", "#637939", "#e7ba52", "#7b4173", "#008b8b", "#843c39", "#e7298a"),
    *("#66a61e", "#7570b3", "#404040", "#a6761d", "#1b9e77", "#d95f02", "#6a3d9a", "#b15928"),
)

#: Colours of series that are not topologies (paths, inits): darker shades, so that a figure
#: mixing both kinds still tells them apart.
OTHER_PALETTE: tuple[str, ...] = (
    *("#001c7f", "#b1400d", "#12711c", "#8c0800", "#591e71", "#592f0d", "#a23582", "#3c3c3c"),
    *("#b8850a", "#006374"),
)

#: Line styles, markers and bar hatches of a topology's variants (the plain topology is solid
#: with "o" and unhatched bars): a bar has no line style, so its variants differ by hatch.
VARIANT_LINES: tuple[str, ...] = ("--", "-.", ":", "--", "-.", ":")
VARIANT_MARKERS: tuple[str, ...] = ("s", "^", "D", "v", "P", "X")
VARIANT_HATCHES: tuple[str, ...] = ("//", "..", "xx", "\\\\", "oo", "++")

_WORD = re.compile(r"[A-Za-z0-9_]+")


@cache
def topology_names() -> tuple[str, ...]:
    """Registered topology names in registry order (empty if the models cannot be imported)."""
    try:
        from resnorm.nn.topologies import TOPOLOGIES
    except ImportError:  # a report needs no model code to be drawn; colours then come by hash
        return ()
    return tuple(TOPOLOGIES.names())


def _hash(text: str) -> int:
    # Python's hash() of a str changes between processes; a report must not.
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def topology_of(label: str) -> str | None:
    """The topology a series label names: the label itself, or its first word that is one."""
    names = topology_names()
    if label in names:
        return label
    for word in _WORD.findall(label):
        if word in names:
            return word
    return None


def topology_color(name: str) -> str:
    """The colour of a topology (of an unknown name: a stable colour chosen by its hash)."""
    names = topology_names()
    if name in names:
        return TOPOLOGY_PALETTE[names.index(name) % len(TOPOLOGY_PALETTE)]
    return OTHER_PALETTE[_hash(name) % len(OTHER_PALETTE)]


@dataclass(frozen=True)
class Style:
    """How one series is drawn."""

    color: str
    ls: str = "-"
    marker: str = "o"
    hatch: str | None = None


class Styler:
    """The styles of one figure's series: fixed per topology, variants and other labels moved
    apart when they would collide within the figure. Asking twice for a label gives one style."""

    def __init__(self) -> None:
        self._given: dict[str, Style] = {}

    def __call__(self, label: str) -> Style:
        if label in self._given:
            return self._given[label]
        topo = topology_of(label)
        used = set(self._given.values())
        if topo == label:
            style = Style(topology_color(label))
        elif topo is not None:
            color, n = topology_color(topo), len(VARIANT_LINES)
            start = _hash(label) % n
            options = [
                Style(
                    color,
                    VARIANT_LINES[(start + i) % n],
                    VARIANT_MARKERS[(start + i) % n],
                    VARIANT_HATCHES[(start + i) % n],
                )
                for i in range(n)
            ]
            style = next((s for s in options if s not in used), options[0])
        else:
            n = len(OTHER_PALETTE)
            start = _hash(label) % n
            options = [Style(OTHER_PALETTE[(start + i) % n], "-", "o") for i in range(n)]
            style = next((s for s in options if s not in used), options[0])
        self._given[label] = style
        return style


__all__ = ["Style", "Styler", "topology_color", "topology_names", "topology_of"]
