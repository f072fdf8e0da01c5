"""`resnorm study list`'s expected run time: it grows with steps, depth and runs, shrinks with
workers, comes from a measurement of real training steps, and reads as an estimate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from resnorm.lab.estimate import (
    TRAIN_OVERHEAD_S,
    Shape,
    format_duration,
    measured_step_time,
    run_cost,
    study_seconds,
)
from resnorm.lab.tasks import resolve


def _train(tmp_path: Path, steps: int, n_layers: int) -> dict[str, Any]:
    tree = {
        "model": {"d_model": 16, "n_heads": 2, "n_layers": n_layers, "max_seq_len": 16},
        "data": {"source": "builtin", "seq_len": 16, "batch_size": 4},
        "train": {"steps": steps, "eval_every": 10, "probe_every": 0},
    }
    return resolve("train", tree, tmp_path)[1]


def _linear(shape: Shape, n_layers: float) -> float:
    return 1e-3 * n_layers * shape.batch_size  # a stand-in for the measurement


def test_the_estimate_grows_with_steps_and_depth(tmp_path: Path) -> None:
    costs = {
        (steps, depth): run_cost("train", _train(tmp_path, steps, depth), _linear)
        for steps in (10, 100)
        for depth in (2, 8)
    }
    assert costs[100, 2] > costs[10, 2] and costs[100, 8] > costs[10, 8]
    assert costs[10, 8] > costs[10, 2] and costs[100, 8] > costs[100, 2]


def test_an_encoder_decoder_costs_its_encoder_layers_plus_one_and_a_half_per_decoder_layer(
    tmp_path: Path,
) -> None:
    base = _train(tmp_path, 10, 4)
    encdec = {**base, "model": {**base["model"], "kind": "encoder_decoder"}}
    uneven = {**encdec, "model": {**encdec["model"], "n_decoder_layers": 2}}
    steps = run_cost("train", base, _linear) - TRAIN_OVERHEAD_S  # linear in the layers
    assert run_cost("train", encdec, _linear) - TRAIN_OVERHEAD_S == pytest.approx(steps * 10 / 4)
    assert run_cost("train", uneven, _linear) - TRAIN_OVERHEAD_S == pytest.approx(steps * 7 / 4)


def test_runs_share_the_workers_and_a_study_takes_at_least_its_longest_run(
    tmp_path: Path,
) -> None:
    short, long = ("train", _train(tmp_path, 10, 2)), ("train", _train(tmp_path, 100, 8))
    one = study_seconds([short] * 4, 1, _linear)
    assert study_seconds([short] * 4, 2, _linear) == pytest.approx(one / 2)
    assert study_seconds([short] * 8, 1, _linear) == pytest.approx(2 * one)
    assert study_seconds([long, short], 8, _linear) == run_cost(*long, _linear)


def test_the_measured_step_time_grows_with_depth_and_batch() -> None:
    step_time = measured_step_time("cpu", 1)
    shape = Shape(d_model=16, n_heads=2, d_ff=None, vocab_size=32, seq_len=8, batch_size=2)
    assert 0 < step_time(shape, 1) < step_time(shape, 6)
    # a batch above the measured tokens is measured cut down and scaled back up
    big = Shape(d_model=16, n_heads=2, d_ff=None, vocab_size=32, seq_len=256, batch_size=64)
    assert step_time(big, 1) > step_time(shape, 1)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(4.2, "~4 s"), (44, "~40 s"), (200, "~3 min"), (3 * 3600 + 600, "~3 h 10 min")],
)
def test_durations_read_as_estimates(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
