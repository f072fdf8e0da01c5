"""``resnorm demo``: the quick pass over the built-in studies that ``make demo`` runs.

skip, gradients-at-init and output-change at quick scale and a small depth map (post_ln, pre_ln,
deepnorm at L = 6 and 24, one seed), through the local executor, with progress bars; then a
table of verdicts, the report's path and the wall time. Module-level ``add_arguments``/``run``
for ``resnorm.cli``'s delegation (the same as `resnorm.lab.cli.Demo`).
"""

from __future__ import annotations

import argparse

from resnorm.lab.cli import Demo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    Demo.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return Demo.run(args)
