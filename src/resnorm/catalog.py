"""The registries as tables: what ``resnorm topologies`` / ``resnorm norms`` print and what the
README's topology table is (a test keeps the README equal to :func:`topologies_markdown`)."""

from __future__ import annotations

from collections.abc import Sequence

from resnorm.nn.norms import EQUATIONS, NORMS, SOURCES
from resnorm.nn.topologies import TOPOLOGIES

FAMILY_ORDER = ("placement", "scaled", "norm_free", "stream", "ablation")


def topology_rows() -> list[tuple[str, str, str, str]]:
    """``(name, family, equation, source)`` for every registered topology, grouped by family."""
    rows = [(n, c.family, c.equation, c.source) for n, c in TOPOLOGIES.items()]
    order = {f: i for i, f in enumerate(FAMILY_ORDER)}
    return sorted(rows, key=lambda r: order.get(r[1], len(order)))


def norm_rows() -> list[tuple[str, str, str]]:
    return [(name, EQUATIONS[name], SOURCES[name]) for name in NORMS.names()]


def text_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])


def topologies_markdown() -> str:
    """The README's topology table."""
    lines = ["| name | family | per sublayer | source |", "|---|---|---|---|"]
    for name, family, equation, source in topology_rows():
        lines.append(f"| `{name}` | {family} | `{equation}` | {source} |")
    return "\n".join(lines)
