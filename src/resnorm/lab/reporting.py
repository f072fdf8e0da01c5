"""``resnorm report``: re-analyse every study of a lab from its store and write the report.

Module-level ``add_arguments``/``run`` for ``resnorm.cli``'s delegation (the same as
`resnorm.lab.cli.Report`); the report itself is `resnorm.report.write_report`.
"""

from __future__ import annotations

import argparse

from resnorm.lab.cli import Report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    Report.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return Report.run(args)
