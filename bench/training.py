"""Sections that go through resnorm's own machinery: the trainer (bf16 vs fp32), diagnostics
overhead (the `Monitor` and the results store), and sweeps (the lab's local executor)."""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from dataclasses import asdict
from typing import Any

import torch

from bench.contenders import REFERENCE, Batches, Trainee, Workload, resnorm_model
from bench.machine import CpuSample, IdleWaiter, Interference, timed
from bench.runner import interleaved, log, ratios, summarize
from bench.speed import Options
from resnorm.diagnostics.gradients import total_grad_norm
from resnorm.train.optim import clip_grads_


def run_config(w: Workload, lab: str, **train: Any) -> Any:
    """The trainer's `RunConfig` of workload ``w`` on the built-in byte-level corpus."""
    from resnorm.config import RunConfig, TrainConfig
    from resnorm.data import DataConfig

    return RunConfig(
        model=w.model_config(),
        data=DataConfig(source="builtin", seq_len=w.seq_len, batch_size=w.batch_size),
        train=TrainConfig(**train),
        lab=lab,
        name=f"bench-{train.get('precision', 'auto')}",
    )


def bf16_training(o: Options, waiter: IdleWaiter) -> dict[str, Any]:
    """Two trainer runs of the reference config, fp32 and bf16 autocast: loss and speed."""
    from resnorm.store import Store
    from resnorm.train import train
    from resnorm.train.loop import resolve_precision

    steps = o.n(300, 30)
    runs: dict[str, Any] = {}
    # The bf16 run is the trainer's default ("auto") where that resolves to bf16, so its
    # recorded environment shows the default; elsewhere bf16 is requested explicitly.
    auto = resolve_precision("auto", torch.device("cpu"), REFERENCE.d_model)
    requests = {"fp32": "fp32", "bf16": "auto" if auto[0] == "bf16" else "bf16"}
    with tempfile.TemporaryDirectory() as lab:
        for precision, requested in requests.items():
            cfg = run_config(
                REFERENCE,
                lab,
                steps=steps,
                precision=requested,
                probe_every=0,
                checkpoint_every=steps,
                warmup_steps=min(100, steps // 3),
                device="cpu",
            )
            waiter.wait()
            log(f"bf16_training: {steps} steps at {precision}")
            a = CpuSample.now()
            result = train(cfg, progress=False)
            b = CpuSample.now()
            store = Store(lab)
            tps = [m.value for m in store.metrics(result.run_id, "tokens_per_s") if m.step > 0]
            losses = store.metrics(result.run_id, "loss")
            env = store.get_run(result.run_id).environment or {}  # type: ignore[union-attr]
            store.close()
            interference = Interference.between(a, b)
            runs[precision] = {
                "status": result.status,
                "val_loss": result.metrics.get("val_loss"),
                "loss": result.metrics.get("loss"),
                "loss_curve": [(m.step, m.value) for m in losses],
                "wall_s": interference.wall_s,
                "tokens_per_s_median": statistics.median(tps) if tps else math.nan,
                "requested_precision": requested,
                "recorded_precision": env.get("precision"),
                "recorded_reason": env.get("precision_reason"),
                "interference": round(interference.fraction, 4),
            }
    fp32, bf16 = runs["fp32"], runs["bf16"]
    return {
        "workload": asdict(REFERENCE),
        "steps": steps,
        "runs": runs,
        "val_loss_rel_diff": abs(bf16["val_loss"] - fp32["val_loss"]) / fp32["val_loss"],
        "speedup_tokens_per_s": bf16["tokens_per_s_median"] / fp32["tokens_per_s_median"],
        "trainer_auto_precision": auto[0],
        "trainer_auto_reason": auto[1],
    }


class _Logged:
    """A training step as the trainer takes it (clip, AdamW, after_step) plus its logging:
    with diagnostics, the Monitor's probes every ``every`` steps and per-step scalars; without,
    the loss every ``every`` steps (the trainer's default ``log_every``)."""

    def __init__(self, w: Workload, store: Any, run_id: str, monitor: bool, every: int) -> None:
        from resnorm.diagnostics import Monitor
        from resnorm.train.probing import DEFAULT_PROBES

        torch.manual_seed(0)
        self.trainee = Trainee(resnorm_model(w))
        self.batches = Batches(w)
        self.store, self.run_id, self.every = store, run_id, every
        self.monitor = Monitor(self.trainee.model, DEFAULT_PROBES, every=every) if monitor else None
        self.params = list(self.trainee.model.parameters())
        self.s = 0
        self.inside_s: list[float] = []  # per block: seconds in the Monitor and its logging
        self._logging_s = 0.0

    def step(self) -> None:
        t, m, s = self.trainee, self.monitor, self.s
        if m:
            m.before_step(s)
        loss = t.loss(*self.batches.next())
        loss.backward()
        loss = loss.detach()
        norm = total_grad_norm(self.params)  # as the trainer: once, for the log and the clipping
        if m:
            m.after_backward(s, grad_norm=norm)
        clip_grads_(self.params, 1.0, norm)
        t.optimizer.step()
        t.optimizer.zero_grad(set_to_none=True)
        t.after_step()
        if m:
            records = m.after_step(s)
            start = time.perf_counter()
            self.store.log_metrics(self.run_id, s, {"loss": float(loss), "grad_norm": float(norm)})
            if m.active(s):
                self.store.log_diagnostics(self.run_id, s, records)
            self._logging_s += time.perf_counter() - start
        elif s % self.every == 0:
            self.store.log_metrics(self.run_id, s, {"loss": float(loss)})
        self.s += 1

    def block(self) -> None:
        before = self._inside()
        for _ in range(self.every):
            self.step()
        self.inside_s.append(self._inside() - before)

    def _inside(self) -> float:
        return self._logging_s + (self.monitor.seconds if self.monitor else 0.0)


def diagnostics_overhead(o: Options, waiter: IdleWaiter) -> dict[str, Any]:
    """Step time with diagnostics on (probes every 10 steps, per-step scalars) vs off, as
    10-step blocks interleaved; and the time spent inside the diagnostics (`Monitor.seconds`
    plus the store calls that log them) over the time of a block without them."""
    from resnorm.store import Store

    every = 10
    configs = {  # workload, rounds, time budget (s)
        "reference": (REFERENCE, o.n(8, 2), o.n(240, 40)),
        "d64_l4": (REFERENCE.replace(d_model=64, n_layers=4), o.n(30, 3), o.n(90, 20)),
    }
    out: dict[str, Any] = {"every": every, "configs": {}}
    with tempfile.TemporaryDirectory() as lab, Store(lab) as store:
        for key, (w, rounds, budget) in configs.items():
            for variant in ("on", "off"):
                store.upsert_run(f"{key}-{variant}", {"bench": key, "diagnostics": variant})
            logged = {
                v: _Logged(w, store, f"{key}-{v}", monitor=v == "on", every=every)
                for v in ("on", "off")
            }
            units = {v: u.block for v, u in logged.items()}
            log(f"diagnostics {key}: 2 x (1 + {rounds}) blocks of {every} steps")
            times = interleaved(
                units,
                rounds=rounds,
                warmup=1,
                waiter=waiter,
                limit=o.limit,
                label=key,
                max_attempts=2,
                budget_s=budget,
                min_rounds=2,
            )
            r = ratios(times["on"], times["off"])
            inside = logged["on"].inside_s[1:]  # after the warmup block
            out["configs"][key] = {
                "workload": asdict(w),
                "rounds": len(times["on"]),
                "on": summarize(times["on"]),
                "off": summarize(times["off"]),
                "overhead": {k: v - 1 for k, v in r.items()},
                "inside_s_per_block": {
                    "median": statistics.median(inside),
                    "min": min(inside),
                    "max": max(inside),
                },
                "attributed": statistics.median(inside)
                / statistics.median(t.seconds for t in times["off"]),
            }
    return out


def sweep_spec(n_runs: int, steps: int) -> Any:
    """A study of ``n_runs`` tiny training runs: 4 topologies x ``n_runs / 4`` seeds."""
    from resnorm.lab import Part, StudySpec, grid

    base = {
        "model": {"d_model": 64, "n_layers": 2, "n_heads": 4, "max_seq_len": 64},
        "data": {"source": "builtin", "seq_len": 64, "batch_size": 16},
        "train": {"steps": steps, "warmup_steps": 0, "eval_every": 0, "probe_every": 0,
                  "checkpoint_every": steps},
    }  # fmt: skip
    topologies = ["pre_ln", "post_ln", "sandwich_ln", "rezero"]
    part = Part(
        name="runs",
        run="train",
        base=base,
        axes=(grid(**{"model.topology": topologies}),),
        seeds=tuple(range(max(1, n_runs // len(topologies)))),
    )
    return StudySpec(name="bench-sweep", claim="throughput", source="bench", parts=(part,))


def sweep(o: Options, waiter: IdleWaiter) -> dict[str, Any]:
    """16 tiny runs through the lab's local executor vs the same runs serially in-process."""
    try:
        from resnorm.lab import make_executor, run_study
    except ImportError:
        return {"skipped": "resnorm.lab is not available in this checkout"}
    n_runs, steps = o.n(16, 4), o.n(100, 10)
    spec = sweep_spec(n_runs, steps)
    out: dict[str, Any] = {"runs": n_runs, "steps": steps, "executors": {}}
    for name in ("local", "serial"):
        executor = make_executor(name)

        def once(executor: Any = executor) -> int:
            with tempfile.TemporaryDirectory() as lab:
                result = run_study(spec, lab, executor=executor, progress=False, report=False)
                return int(result.ran)

        log(f"sweep: {n_runs} runs of {steps} steps, executor {executor.describe()}")
        t = timed(once, limit=o.limit, max_attempts=2, before=waiter.wait)
        out["executors"][name] = {
            "describe": executor.describe(),
            "seconds": t.seconds,
            "ran": t.value,
            "interference": round(t.interference.fraction, 4),
            "attempts": t.attempts,
        }
    local, serial = out["executors"]["local"], out["executors"]["serial"]
    out["throughput_ratio"] = serial["seconds"] / local["seconds"]
    out["summary"] = (
        f"{n_runs} runs of {steps} steps (d_model 64, 2 layers, context 64, batch 16): "
        f"local executor ({local['describe']}) {local['seconds']:.1f} s, serially in one "
        f"process ({serial['describe']}) {serial['seconds']:.1f} s: throughput ratio "
        f"{out['throughput_ratio']:.2f}x."
    )
    return out
