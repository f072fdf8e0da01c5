"""The configs in examples/ load, build and compute a finite loss on their first batch, with the
objective their comments promise."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from resnorm.config import load_config
from resnorm.data import IGNORE_INDEX, build_data, call_model
from resnorm.nn.model import build_model
from resnorm.train.loop import token_loss_sum

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.toml"))
OBJECTIVES = {"depth24": "causal_lm", "mlm": "mlm", "reverse-seq2seq": "seq2seq"}


def test_every_example_is_listed() -> None:
    assert sorted(p.stem for p in EXAMPLES) == sorted(OBJECTIVES)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_an_example_builds_and_its_first_batch_has_a_finite_loss(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.data.objective == OBJECTIVES[path.stem]
    data = build_data(cfg.data)
    assert data.vocab_size <= cfg.model.vocab_size
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    inputs, targets = data.train_batch(0)
    with torch.no_grad():
        loss = token_loss_sum(call_model(model, inputs), targets)
    n = int((targets != IGNORE_INDEX).sum())
    assert n > 0 and math.isfinite(float(loss) / n)
