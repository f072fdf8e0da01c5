"""Verdicts are computed from the numbers: scalars, quantities and checks against hand values."""

from __future__ import annotations

import math
from typing import Any

import pytest

from resnorm.lab.verdicts import check, quantities, run_scalars, slope, spearman, verdict
from resnorm.store.records import Diagnostic, Metric


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
    diags = [Diagnostic(0, "g", layer, "decoder.mlp", float(layer + 1), "l2") for layer in range(8)]
    diags += [Diagnostic(0, "g", layer, "decoder.attn", 100.0, "l2") for layer in range(8)]
    diags += [Diagnostic(5, "g", 7, "decoder.mlp", 50.0, "l2")]
    diags += [Diagnostic(0, "g", None, "decoder.embed", 0.5, "l2")]
    metrics = [Metric(s, "loss", 3.0 - 0.1 * s) for s in range(10)]
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
    mixed = check(
        {"expr": "b > a", "per_seed": True, "min_seeds": 2}, specs, rows
    )  # seed 0 yes, seed 1 no
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


def _pairs(a: list[float], b: list[float]) -> list[dict[str, Any]]:
    """Seed s has topology a's scalar a[s] and b's b[s]."""
    rows = [_row(s, {"t": "a"}, v=v) for s, v in enumerate(a)]
    return rows + [_row(s, {"t": "b"}, v=v) for s, v in enumerate(b)]


SPECS = {
    "a": {"of": "v", "where": {"t": "a"}},
    "b": {"of": "v", "where": {"t": "b"}},
    "gap": {"expr": "b - a"},
}


def test_effect_is_the_mean_over_seeds_with_a_95_percent_student_t_interval() -> None:
    rows = _pairs([0.0, 0.0, 0.0], [1.0, 2.0, 3.0])  # per-seed gaps 1, 2, 3
    c = check({"expr": "gap > 0", "per_seed": True, "effect": "gap", "unit": "nats"}, SPECS, rows)
    e = c["effect"]
    half = 4.303 * 1.0 / math.sqrt(3)  # t(0.975, df=2) * sd / sqrt(n)
    assert e["mean"] == pytest.approx(2.0) and e["values"] == [1.0, 2.0, 3.0]
    assert (e["lo"], e["hi"]) == pytest.approx((2.0 - half, 2.0 + half), rel=1e-4)
    assert c["result"] == "pass" and (c["k"], c["n"]) == (3, 3)
    assert "gap = 2 nats (-0.484 to 4.48, 95% t, 3 seeds)" in c["sentence"]
    assert "on 3 of 3 seeds" in c["sentence"]


def test_per_seed_directions_hold_fail_or_disagree_by_min_pass() -> None:
    rows = _pairs([0.0] * 6, [1.0, 1.0, 1.0, 1.0, 1.0, -1.0])  # holds on 5 of 6 seeds
    every = check({"expr": "gap > 0", "per_seed": True}, SPECS, rows)
    five = check({"expr": "gap > 0", "per_seed": True, "min_pass": 5}, SPECS, rows)
    opposite = check({"expr": "gap < 0", "per_seed": True, "min_pass": 5}, SPECS, rows)
    assert every["result"] == "mixed" and "holds on 5 of 6 seeds, fails on 1" in every["note"]
    assert five["result"] == "pass" and opposite["result"] == "fail"


def test_a_failed_check_says_how_far_its_number_is_from_the_threshold_and_the_papers() -> None:
    rows = _pairs([1.0, 1.0, 1.0], [5.0, 5.5, 6.0])
    c = check(
        {
            "expr": "b >= 8",
            "label": "b grows at least x8",
            "paper": {"reports": "O(N)", "where": "Theorem 2"},
        },
        SPECS,
        rows,
    )
    assert c["result"] == "fail"
    assert "b = 5.5 is 2.5 below the threshold 8" in c["sentence"]
    assert c["sentence"].endswith("The paper: O(N) (Theorem 2)")
    assert c["paper"] == {"reports": "O(N)", "where": "Theorem 2"}


def test_a_check_with_an_unknown_effect_or_paper_key_is_refused_when_the_spec_is_built() -> None:
    from resnorm.errors import ConfigError
    from resnorm.lab.grammar import check_from

    with pytest.raises(ConfigError, match=r"paper\.year: unknown key"):
        check_from({"expr": "a > 0", "paper": {"reports": "x", "year": 2020}}, "study.checks[0]")
    with pytest.raises(ConfigError, match=r"study.checks\[0\].min_pass"):
        check_from({"expr": "a > 0", "min_pass": -1}, "study.checks[0]")


def test_a_ratio_effect_is_a_geometric_mean_with_an_interval_that_stays_positive() -> None:
    rows = _pairs([1.0, 1.0, 1.0], [2.0, 8.0, 32.0])  # ratios 2, 8, 32: log-mean log 8
    specs = {**SPECS, "ratio": {"expr": "b / a"}}
    c = check({"expr": "ratio > 1", "per_seed": True, "effect": "ratio", "unit": "x"}, specs, rows)
    e = c["effect"]
    half = 4.303 * math.log(4) / math.sqrt(3)  # sd of (log 2, log 8, log 32) is log 4
    assert e["mean"] == pytest.approx(8.0)
    assert (e["lo"], e["hi"]) == pytest.approx((8 * math.exp(-half), 8 * math.exp(half)))
    assert e["lo"] > 0 and e["interval"].startswith("geometric mean")
