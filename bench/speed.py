"""Step-time sections: the contenders (fp32 and bf16), every topology against pre_ln, depth.

Each section returns a JSON-ready dict; `bench.__main__` writes it to ``bench/results/``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from bench.contenders import (
    CONTENDERS,
    REFERENCE,
    Batches,
    Trainee,
    available,
    build_trainee,
    resnorm_model,
    versions,
)
from bench.machine import CpuSample, IdleWaiter, Interference, Timed
from bench.runner import interleaved, log, ratios, summarize, total_ratio

#: Why a topology is allowed to be slower than 1.3x pre_ln: it carries more than one stream.
MULTI_STREAM_REASONS = {
    "hyper_connections": "n residual streams (default 4): every sublayer reads a learned mix of "
    "n copies of the stream and writes back to all of them, so the stream traffic and the "
    "width of its elementwise ops grow n-fold",
    "denseformer": "after every layer a weighted average over all earlier layer outputs: "
    "O(L^2) stream-sized adds per pass, and every layer output kept for the backward pass",
    "resi_dual": "two streams (Post-LN and the un-normalized dual), so twice the residual "
    "adds and one extra norm on the stream",
    "value_residual": "every layer mixes its values with the first layer's, kept for the pass",
    "ngpt": "normalizes the stream and both branch outputs in every sublayer, and renormalizes "
    "every matrix after each optimizer step",
}


@dataclass
class Options:
    """How much to measure: ``quick`` for a smoke run, the defaults for the report."""

    quick: bool = False
    limit: float = 0.05

    def n(self, full: int, quick: int) -> int:
        """``full`` normally, ``quick`` in a quick run (a count or a time budget in seconds)."""
        return quick if self.quick else full


def step_unit(trainee: Trainee, batches: Batches) -> Callable[[], float]:
    return lambda: trainee.step(*batches.next())


def _per_contender(
    times: dict[str, list[Timed]], flops_per_step: int, tokens: int, peaks: dict[str, float]
) -> dict[str, Any]:
    out = {}
    for key, series in times.items():
        s = summarize(series)
        precision = key.rsplit("/", 1)[1]
        gflops = flops_per_step / s["median_s"] / 1e9
        out[key] = {
            **s,
            "tokens_per_s": tokens / s["median_s"],
            "gflops": gflops,
            "peak_gflops": peaks.get(precision),
            "peak_fraction": gflops / peaks[precision] if peaks.get(precision) else None,
        }
    return out


def contenders(o: Options, waiter: IdleWaiter, peaks: dict[str, float]) -> dict[str, Any]:
    """Every contender at the reference config, fp32 and bf16 autocast, interleaved."""
    w = REFERENCE
    names = [n for n in CONTENDERS if available(n)]
    libraries = [n for n in names if n not in ("resnorm", "baseline")]
    units = {}
    for precision in ("fp32", "bf16"):
        for name in names:
            trainee = build_trainee(name, w, bf16=precision == "bf16")
            units[f"{name}/{precision}"] = step_unit(trainee, Batches(w))
    rounds, warmup = o.n(20, 4), o.n(3, 1)
    log(f"contenders: {len(units)} x ({warmup} warmup + {rounds} timed) steps")
    times = interleaved(
        units, rounds=rounds, warmup=warmup, waiter=waiter, limit=o.limit, label="contenders",
        budget_s=o.n(300, 60), min_rounds=o.n(20, 2),
    )  # fmt: skip
    result: dict[str, Any] = {
        "workload": asdict(w),
        "flops_per_token": w.flops_per_token,
        "flops_per_step": w.flops_per_step,
        "versions": versions(),
        "missing": [n for n in CONTENDERS if n not in names],
        "rounds": len(next(iter(times.values()))),
        "warmup": warmup,
        "contenders": _per_contender(times, w.flops_per_step, w.tokens, peaks),
        "final_loss": {k: units[k]() for k in units},  # one more step each: a sanity check
    }
    ratio_table = {}
    for precision in ("fp32", "bf16"):
        mine = times[f"resnorm/{precision}"]
        for other in names[1:]:
            ratio_table[f"resnorm/{other} {precision}"] = ratios(
                mine, times[f"{other}/{precision}"]
            )
        if libraries:
            per_round = zip(*(times[f"{n}/{precision}"] for n in libraries), strict=True)
            fastest = [min(group, key=lambda t: t.seconds) for group in per_round]
            ratio_table[f"resnorm/fastest-library {precision}"] = ratios(mine, fastest)
    result["ratios"] = ratio_table
    result["bf16_speedup"] = {
        name: {
            **ratios(times[f"{name}/fp32"], times[f"{name}/bf16"]),
            "of_medians": total_ratio(times[f"{name}/fp32"], times[f"{name}/bf16"]),
        }
        for name in names
    }
    return result


def topologies(o: Options, waiter: IdleWaiter) -> dict[str, Any]:
    """Every registered topology at the reference config, step time relative to pre_ln."""
    from resnorm.nn.topologies import TOPOLOGIES

    w = REFERENCE
    names = ["pre_ln"] + [n for n in TOPOLOGIES.names() if n != "pre_ln"]
    units, errors, families = {}, {}, {}
    for name in names:
        families[name] = TOPOLOGIES.get(name, "topology").family
        try:
            torch.manual_seed(0)
            units[name] = step_unit(Trainee(resnorm_model(w.replace(topology=name))), Batches(w))
        except Exception as e:  # one topology that cannot build is reported
            errors[name] = f"{type(e).__name__}: {e}"
    rounds, warmup = o.n(7, 1), o.n(2, 1)
    log(f"topologies: {len(units)} x ({warmup} warmup + {rounds} timed) steps")
    times = interleaved(
        units,
        rounds=rounds,
        warmup=warmup,
        waiter=waiter,
        limit=o.limit,
        label="topologies",
        budget_s=o.n(360, 60),
        min_rounds=o.n(5, 1),
    )
    rows = {}
    for name, series in times.items():
        r = ratios(series, times["pre_ln"])
        rows[name] = {
            "family": families[name],
            **summarize(series),
            "vs_pre_ln": r,
            "multi_stream": name in MULTI_STREAM_REASONS,
            "reason": MULTI_STREAM_REASONS.get(name),
        }
    return {
        "workload": asdict(w),
        "rounds": len(next(iter(times.values()))),
        "warmup": warmup,
        "topologies": rows,
        "errors": errors,
    }


def depth(o: Options, waiter: IdleWaiter) -> dict[str, Any]:
    """Step time per layer at d_model 128 from 6 to 48 layers."""
    base = REFERENCE.replace(d_model=128)
    depths = [6, 24] if o.quick else [6, 12, 24, 48]
    units = {}
    for n in depths:
        torch.manual_seed(0)
        w = base.replace(n_layers=n)
        units[str(n)] = step_unit(Trainee(resnorm_model(w)), Batches(w))
    rounds, warmup = o.n(6, 1), 1
    log(f"depth: {depths} x ({warmup} warmup + {rounds} timed) steps")
    times = interleaved(
        units,
        rounds=rounds,
        warmup=warmup,
        waiter=waiter,
        limit=o.limit,
        label="depth",
        budget_s=o.n(150, 40),
        min_rounds=o.n(3, 1),
    )
    deepest = depths[-1]
    # Per round, step/L relative to the deepest model's step/L in the same round: the machine's
    # speed drifts between rounds (shared hosts), which a ratio of medians would mix in.
    relative = {
        n: {k: v * deepest / n for k, v in ratios(times[str(n)], times[str(deepest)]).items()}
        for n in depths
    }
    med = {n: statistics.median(t.seconds for t in times[str(n)]) for n in depths}
    # Least squares step = a + b L: b is the marginal cost of a layer, a the embedding, head,
    # loss and optimizer overhead that does not grow with depth.
    mx, my = statistics.fmean(depths), statistics.fmean(med.values())
    slope = sum((x - mx) * (med[x] - my) for x in depths) / sum((x - mx) ** 2 for x in depths)
    intercept = my - slope * mx
    per_layer = {n: med[n] / n for n in depths}
    return {
        "workload": asdict(base),
        "rounds": len(next(iter(times.values()))),
        "depths": depths,
        "steps": {str(n): summarize(times[str(n)]) for n in depths},
        "per_layer_s": {str(n): per_layer[n] for n in depths},
        "per_layer_vs_deepest": {str(n): relative[n] for n in depths},
        "per_layer_spread": max(r["median"] for r in relative.values())
        / min(r["median"] for r in relative.values()),
        "per_layer_spread_of_medians": max(per_layer.values()) / min(per_layer.values()),
        "fit": {"per_layer_s": slope, "fixed_s": intercept},
        "per_layer_net_spread": max((med[n] - intercept) / n for n in depths)
        / min((med[n] - intercept) / n for n in depths),
    }


def optimizer(o: Options, waiter: IdleWaiter) -> dict[str, Any]:
    """One AdamW step over the reference model's parameters: per-tensor loop, foreach, fused."""
    torch.manual_seed(0)
    params = list(resnorm_model(REFERENCE).parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    kinds = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
    units = {}
    for kind, kw in kinds.items():
        opt = torch.optim.AdamW(params, lr=1e-6, weight_decay=0.1, **kw)  # type: ignore[arg-type]
        units[kind] = opt.step
    rounds = o.n(30, 5)
    times = interleaved(
        units, rounds=rounds, warmup=2, waiter=waiter, limit=o.limit, label="optimizer",
        budget_s=o.n(60, 15), min_rounds=5,
    )  # fmt: skip
    return {
        "params": sum(p.numel() for p in params),
        "tensors": len(params),
        "rounds": len(times["loop"]),
        "steps": {k: summarize(v) for k, v in times.items()},
        "vs_foreach": {k: ratios(v, times["foreach"]) for k, v in times.items()},
    }


def bf16_width(o: Options, waiter: IdleWaiter) -> dict[str, Any]:
    """bf16 autocast speed-up over fp32 by model width (6 layers, context 256, batch 16):
    where on this CPU autocast starts to pay, which the ``auto`` precision policy should know."""
    widths = [64, 256] if o.quick else [64, 128, 256, 512]
    units = {}
    for d in widths:
        w = REFERENCE.replace(d_model=d)
        for precision in ("fp32", "bf16"):
            torch.manual_seed(0)
            trainee = Trainee(resnorm_model(w), bf16=precision == "bf16")
            units[f"{d}/{precision}"] = step_unit(trainee, Batches(w))
    rounds = o.n(6, 2)
    times = interleaved(
        units, rounds=rounds, warmup=1, waiter=waiter, limit=o.limit, label="bf16_width",
        budget_s=o.n(150, 40), min_rounds=o.n(3, 1),
    )  # fmt: skip
    return {
        "rounds": len(times[f"{widths[0]}/fp32"]),
        "widths": {
            str(d): {
                "fp32": summarize(times[f"{d}/fp32"]),
                "bf16": summarize(times[f"{d}/bf16"]),
                "speedup": ratios(times[f"{d}/fp32"], times[f"{d}/bf16"]),
            }
            for d in widths
        },
    }


#: Self-time categories of a profiled step: which ops bf16 autocast speeds up and which not.
BREAKDOWN = ("matmul", "attention", "casts and copies", "other")
_MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::mv", "aten::addmv"}
_COPY_OPS = {"aten::copy_", "aten::_to_copy", "aten::to", "aten::clone", "aten::contiguous"}


def op_category(name: str) -> str:
    """The `BREAKDOWN` category of a profiler event name (``aten::...``)."""
    if "scaled_dot_product" in name or "flash_attention" in name:
        return "attention"
    if name in _MATMUL_OPS:
        return "matmul"
    if name in _COPY_OPS:
        return "casts and copies"
    return "other"


def bf16_breakdown(o: Options, waiter: IdleWaiter) -> dict[str, Any]:
    """Where a reference-config step of resnorm spends its time, fp32 vs bf16 autocast.

    ``torch.profiler`` self CPU time per op, grouped by `op_category`, per step; rounds
    alternate the two precisions. It shows which part of the step bf16 does not speed up,
    which bounds the whole step's speed-up (Amdahl).
    """
    from torch.profiler import ProfilerActivity, profile

    trainees = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        trainees[precision] = (
            Trainee(resnorm_model(REFERENCE), bf16=precision == "bf16"),
            Batches(REFERENCE),
        )
    for trainee, batches in trainees.values():  # warm up (oneDNN builds kernels on first use)
        trainee.step(*batches.next())
    rounds, steps = o.n(3, 1), 2
    totals = {p: dict.fromkeys(BREAKDOWN, 0.0) for p in trainees}
    interference = {p: 0.0 for p in trainees}
    for r in range(rounds):
        for precision, (trainee, batches) in trainees.items():
            waiter.wait()
            log(f"bf16_breakdown: round {r + 1}/{rounds} {precision}")
            a = CpuSample.now()
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(steps):
                    trainee.step(*batches.next())
            interference[precision] = max(
                interference[precision], Interference.between(a, CpuSample.now()).fraction
            )
            for event in prof.key_averages():
                totals[precision][op_category(event.key)] += event.self_cpu_time_total / 1e6
    n = rounds * steps
    per_step = {p: {c: s / n for c, s in cats.items()} for p, cats in totals.items()}
    fp32, bf16 = per_step["fp32"], per_step["bf16"]
    return {
        "workload": asdict(REFERENCE),
        "rounds": rounds,
        "steps_per_round": steps,
        "per_step_s": per_step,
        "speedup": {c: fp32[c] / bf16[c] if bf16[c] else None for c in BREAKDOWN},
        "step_speedup": sum(fp32.values()) / sum(bf16.values()),
        "interference_max": {p: round(v, 4) for p, v in interference.items()},
    }
