"""Fixtures of the report tests: a lab holding the tiny study of `labkit` (tests/lab)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "lab"))
sys.path.insert(0, str(Path(__file__).parent))  # reportkit

from labkit import tiny_study

from resnorm.lab import run_study


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lab folder with the tiny study run (serially) and its report written."""
    root = tmp_path_factory.mktemp("report")
    _, spec = tiny_study(root)
    run_study(spec, root / "lab", executor="serial", progress=False)
    return root / "lab"
