"""Fixtures of the training tests (helpers live in `trainkit`, beside this file)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from trainkit import TINY_TOML


@pytest.fixture
def tiny_toml(tmp_path: Path) -> Path:
    """The tiny run config as a TOML file."""
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_TOML)
    return path


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread (and the CI machine has two cores to share)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
