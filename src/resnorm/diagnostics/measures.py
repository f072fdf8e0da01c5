"""`MEASURES`: measurements the lab runs as their own run kind, beside ``train`` and ``probe``.

A measurement is for what is not a resnorm model run (the attention-only paths of the ``skip``
study): a typed config dataclass and a function of it returning records. It lives here, in
diagnostics, so that the lab (which runs it by name) and the studies (which name it in a part)
both import it from below and neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from resnorm.diagnostics.base import Record
from resnorm.diagnostics.paths import SkipPathsConfig, skip_paths
from resnorm.registry import Registry


@dataclass(frozen=True)
class Measure:
    """A registered measurement: its config dataclass and the function that measures it.

    ``fn(config)`` returns ``(records, summary)``: diagnostics records (``probe``, ``layer``,
    ``key``, ``value``, ``unit``; logged at step 0) and a dict of scalars.
    ``seed_field`` is the config field a study part's seed sets.
    """

    config: type
    fn: Callable[[Any], tuple[Sequence[Record], dict[str, float]]]
    seed_field: str = "seed"


MEASURES: Registry[Measure] = Registry("run kind")
# Registered here rather than in their own modules, so that importing this registry is all it
# takes to know every measurement (no import-for-side-effect of a studies module).
MEASURES.register("skip_paths")(Measure(SkipPathsConfig, skip_paths))
