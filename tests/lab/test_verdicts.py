"""Verdicts are computed from the numbers: scalars, quantities and checks against hand values."""

from __future__ import annotations

import math
from typing import Any

import pytest

from resnorm.lab.verdicts import check, quantities, run_scalars, slope, spearman, verdict


def _row(seed: int, point: dict, **scalars: float) -> dict[str, Any]:
    return {
        "run_id": f"{point}-{seed}",
        "part": "p",
        "point": point,
        "seed": seed,
        "status": "done",
        "scalars": scalars,
    }


def test_scalars_pick_layers_keys_steps_and_fractions_of_the_diagnostics() -> None:
    diags = [(0, "g", layer, "decoder.mlp", float(layer + 1), "l2") for layer in range(8)]
    diags += [(0, "g", layer, "decoder.attn", 100.0, "l2") for layer in range(8)]
    diags += [(5, "g", 7, "decoder.mlp", 50.0, "l2"), (0, "g", None, "decoder.embed", 0.5, "l2")]
    metrics = [(s, "loss", 3.0 - 0.1 * s) for s in range(10)]
    specs = {
        "first": {"probe": "g", "key": "decoder.mlp", "layer": "first"},
        "last": {"probe": "g", "key": "decoder.mlp", "layer": -1},
        "third": {"probe": "g", "key": "decoder.mlp", "layer": 2},
        "later": {"probe": "g", "key": "decoder.mlp", "layer": "last", "step": "last"},
        "lastq": {"probe": "g", "key": "decoder.mlp", "fraction": [0.75, 1.0]},
        "peak": {"probe": "g", "key": "decoder.*", "reduce": "max"},
        "embed": {"probe": "g", "key": "decoder.embed"},
        "ratio": {"expr": "last / first"},
        "to_2_5": {"metric": "loss", "below": 2.5, "window": 1},
        "to_0": {"metric": "loss", "below": 0.0},
        "final": {"metric": "loss"},
    }
    s = run_scalars({"status": "done", "config": {}}, metrics, diags, specs)
    assert (s["first"], s["last"], s["third"], s["later"]) == (1.0, 8.0, 3.0, 50.0)
    assert s["lastq"] == (7 + 8) / 2 and s["peak"] == 100.0 and s["embed"] == 0.5
    assert s["ratio"] == 8.0 and s["to_2_5"] == 5 and s["to_0"] == math.inf
    assert s["final"] == pytest.approx(2.1) and s["done"] == 1.0 and s["diverged"] == 0.0


def test_a_diverged_run_scores_the_uniform_loss_and_a_failed_one_is_missing() -> None:
    run = {
        "status": "diverged",
        "config": {"train": {}},
        "summary": {"uniform_loss": 5.5, "loss": math.nan},
        "environment": {},
    }
    assert run_scalars(run, [], [], {})["final_loss"] == 5.5
    assert math.isnan(run_scalars({**run, "status": "failed"}, [], [], {})["final_loss"])


def test_slope_and_rank_correlation_match_hand_values() -> None:
    xs = [2.0, 4.0, 8.0, 16.0]
    assert slope(xs, [x**0.5 for x in xs]) == pytest.approx(0.5)
    assert slope(xs, [3 * x + 1 for x in xs], log=False) == pytest.approx(3.0)
    assert spearman(xs, [1.0, 2.0, 3.0, 4.0]) == pytest.approx(1.0)
    assert spearman(xs, [4.0, 3.0, 1.0, 2.0]) == pytest.approx(-0.8)
    assert math.isnan(slope([1.0], [1.0]))


def test_quantities_average_seeds_per_point_then_aggregate() -> None:
    rows = [
        _row(0, {"t": "a", "L": 2}, v=1.0),
        _row(1, {"t": "a", "L": 2}, v=3.0),
        _row(0, {"t": "a", "L": 8}, v=8.0),
        _row(0, {"t": "b", "L": 2}, v=10.0),
    ]
    q = quantities(
        {
            "mean_a": {"of": "v", "where": {"t": "a"}},
            "max_a": {"of": "v", "where": {"t": "a"}, "agg": "max"},
            "a2": {"of": "v", "where": {"t": "a", "L": 2}},
            "any": {"of": "v", "where": {"t": ["a", "b"], "L": 2}, "agg": "count"},
            "slope_a": {"slope": "v", "x": "L", "where": {"t": "a"}},
            "d": {"expr": "max_a - a2"},
        },
        rows,
    )
    assert q == {"mean_a": 5.0, "max_a": 8.0, "a2": 2.0, "any": 2.0, "slope_a": 1.0, "d": 6.0}


def test_verdict_reproduced_not_reproduced_and_inconclusive() -> None:
    rows = [
        _row(s, {"t": t}, v=v)
        for s, t, v in [(0, "a", 1.0), (1, "a", 1.0), (0, "b", 3.0), (1, "b", 0.5)]
    ]
    specs = {
        "a": {"of": "v", "where": {"t": "a"}},
        "b": {"of": "v", "where": {"t": "b"}},
        "n": {"of": "v", "where": {"t": "none"}},
    }
    passed = check({"expr": "b > a"}, specs, rows)  # means: 1.75 > 1.0
    failed = check({"expr": "b > 5"}, specs, rows)
    mixed = check({"expr": "b > a", "per_seed": True, "min_seeds": 2}, specs, rows)  # seed 0 yes, seed 1 no
    missing = check({"expr": "n > 0"}, specs, rows)
    info = check({"expr": "b > 5", "informational": True}, specs, rows)
    few = check({"expr": "b > 0", "per_seed": True, "min_seeds": 3}, specs, rows)
    assert few["result"] == "missing" and few["note"] == "2 seed(s) measured; the criterion needs 3"
    assert [c["result"] for c in (passed, failed, mixed, missing)] == [
        "pass",
        "fail",
        "mixed",
        "missing",
    ]
    assert [p["result"] for p in mixed["per_seed"]] == ["pass", "fail"]
    assert verdict([passed])[0] == "reproduced"
    assert verdict([passed, info])[0] == "reproduced"  # informational checks do not count
    assert verdict([passed, failed, missing])[0] == "not reproduced"
    assert verdict([passed, mixed])[0] == "inconclusive"
    assert verdict([passed, missing])[0] == "inconclusive"
    assert verdict([passed, few]) == ("inconclusive", "undecided: b > 0 (" + few["note"] + ")")
    assert verdict([])[0] == "inconclusive"
