"""The built-in studies: each a function ``scale -> StudySpec`` testing one published claim.

``resnorm study list`` prints them; ``resnorm study run NAME [--scale quick|full]`` runs one.
`DEMO` is what ``resnorm demo`` runs. See ``docs/studies.md`` for the claims and criteria.
"""

from __future__ import annotations

from collections.abc import Callable

from resnorm.lab.spec import StudySpec
from resnorm.registry import Registry
from resnorm.studies.at_init import gradients_at_init, output_change
from resnorm.studies.common import SCALES
from resnorm.studies.growth import curse_of_depth, peri
from resnorm.studies.kinds import depth_seq2seq, warmup_mlm
from resnorm.studies.skip import skip
from resnorm.studies.stream import init_scaling, token_alignment
from resnorm.studies.training import depth, no_norm, warmup

StudyFn = Callable[[str], StudySpec]
STUDIES: Registry[StudyFn] = Registry("study")
for _name, _fn in (
    ("skip", skip),
    ("gradients-at-init", gradients_at_init),
    ("output-change", output_change),
    ("token-alignment", token_alignment),
    ("init-scaling", init_scaling),
    ("depth", depth),
    ("warmup", warmup),
    ("curse-of-depth", curse_of_depth),
    ("no-norm", no_norm),
    ("peri", peri),
    ("depth-seq2seq", depth_seq2seq),
    ("warmup-mlm", warmup_mlm),
):
    STUDIES.register(_name)(_fn)


def get_study(name: str, scale: str = "quick") -> StudySpec:
    """The built-in study ``name`` at ``scale`` (a ConfigError lists the valid names)."""
    return STUDIES.get(name, "study")(scale)


def demo_studies() -> list[StudySpec]:
    """What ``resnorm demo`` runs: skip, gradients-at-init, output-change at quick scale and
    the decisive cell of the depth study (post_ln and deepnorm at L = 18, 3 seeds)."""
    return [
        skip("quick"),
        gradients_at_init("quick"),
        output_change("quick"),
        depth("quick", small=True),
    ]


__all__ = ["SCALES", "STUDIES", "demo_studies", "get_study"]
