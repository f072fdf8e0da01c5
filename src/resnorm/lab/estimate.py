"""How long a study will take on this machine: an estimate from a short measurement.

Computed as follows, once per process and per model width (cached):

1. Measure: a few optimizer steps (AdamW, forward, backward, clipping) of a Pre-LN decoder of
   the width of each distinct run shape (``d_model``, heads, ``d_ff``, vocabulary, batch) at 1
   and at 3 layers, on the device and with the torch threads a worker of the local executor
   would use; the fastest step of each counts. The measured batch is cut to `MEASURE_TOKENS`
   tokens and the time scaled back linearly, so a paper-sized width costs a fraction of a second.
2. Model: a step of an ``L``-layer model takes ``t(1) + (L - 1) * (t(3) - t(1)) / 2``; an
   encoder-decoder counts its encoder layers plus 1.5 per decoder layer (`layers`).
3. Runs: a training run costs ``steps`` steps, plus its evaluations (a forward pass is about a
   third of a step) and probes (about two steps each), plus `TRAIN_OVERHEAD_S` (data, model
   build, checkpoints, store). A ``probe`` run costs `PROBE_STEPS` steps of its model on its
   batch plus `RUN_OVERHEAD_S`; another measurement (``skip_paths``) a step of its shape when
   its config names ``d_model``/``n_layers``, else `RUN_OVERHEAD_S` alone.
4. Study: the runs' total divided by the local executor's workers, and never less than its
   longest run.

It is an estimate: the topology (a hyper-connection or DenseFormer trunk costs more than Pre-LN),
the load of other processes and the first-call costs of a fresh worker all move the real time.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: The measured batch holds at most this many tokens; the time is scaled to the real batch.
MEASURE_TOKENS = 512
# The constants below were fitted to runs of the quick studies timed on a 2-core CPU.
#: Seconds a training run spends outside its steps (data, model build, checkpoints, store).
TRAIN_OVERHEAD_S = 1.5
#: Seconds any other run spends outside its passes (model build, store).
RUN_OVERHEAD_S = 0.05
#: Steps a ``probe`` run costs: the forward and backward passes with hooks, and the extra
#: forward passes some probes make (output change, layer drop).
PROBE_STEPS = 1.5


@dataclass(frozen=True)
class Shape:
    """What a step's time depends on besides depth (the topology is left out: see above)."""

    d_model: int
    n_heads: int
    d_ff: int | None
    vocab_size: int
    seq_len: int
    batch_size: int
    mlp: str = "gelu"


#: ``step_time(shape, n_layers) -> seconds``, the measured model by default.
StepTime = Callable[[Shape, float], float]


def run_cost(run: str, config: Mapping[str, Any], step_time: StepTime) -> float:
    """Estimated seconds of one run of kind ``run`` with the resolved ``config``."""
    if run == "train":
        m, d, t = config["model"], config["data"], config["train"]
        steps = t["steps"]
        evals = (steps // t["eval_every"] if t["eval_every"] else 0) + 2
        probes = steps // t["probe_every"] + 1 if t["probe_every"] else 0
        equivalent = steps + evals * t["eval_batches"] / 3 + 2 * probes
        step = step_time(_shape(m, d["seq_len"], d["batch_size"]), layers(m))
        return TRAIN_OVERHEAD_S + equivalent * step
    if run == "probe":
        m, b = config["model"], config["batch"]
        return RUN_OVERHEAD_S + PROBE_STEPS * step_time(
            _shape(m, b["seq_len"], b["size"]), m["n_layers"]
        )
    if "d_model" in config and "n_layers" in config:
        shape = _shape(config, config.get("seq_len", 64), config.get("batch_size", 8))
        return RUN_OVERHEAD_S + step_time(shape, config["n_layers"])
    return RUN_OVERHEAD_S


#: A decoder layer of an encoder-decoder costs about this many self-attention layers: its
#: cross-attention is a third sublayer beside attention and the feed-forward.
CROSS_LAYER_COST = 1.5


def layers(model: Mapping[str, Any]) -> float:
    """Decoder-layer equivalents of ``model``: its layers, or for an encoder-decoder its encoder
    layers plus `CROSS_LAYER_COST` per decoder layer."""
    n = model["n_layers"]
    if model.get("kind", "decoder") != "encoder_decoder":
        return n  # type: ignore[no-any-return]
    return n + CROSS_LAYER_COST * (model.get("n_decoder_layers") or n)  # type: ignore[no-any-return]


def study_seconds(
    runs: Iterable[tuple[str, Mapping[str, Any]]], workers: int, step_time: StepTime
) -> float:
    """Estimated wall time of ``runs`` (``(run kind, config)`` each) on ``workers`` workers."""
    costs = [run_cost(run, config, step_time) for run, config in runs]
    return max(sum(costs) / max(workers, 1), max(costs, default=0.0))


def _shape(model: Mapping[str, Any], seq_len: int, batch_size: int) -> Shape:
    return Shape(
        d_model=model["d_model"],
        n_heads=model.get("n_heads", 4),
        d_ff=model.get("d_ff"),
        vocab_size=model.get("vocab_size", 256),
        seq_len=seq_len,
        batch_size=batch_size,
        mlp=model.get("mlp", "gelu"),
    )


def measured_step_time(device: str, threads: int) -> StepTime:
    """`StepTime` from measured steps on ``device`` with ``threads`` torch threads."""

    def step_time(shape: Shape, n_layers: float) -> float:
        one = _measure(shape, 1, device, threads)
        three = _measure(shape, 3, device, threads)
        per_layer = max((three - one) / 2, 0.1 * one)  # noise must not make depth free
        return one + (n_layers - 1) * per_layer

    return step_time


@functools.cache
def _measure(shape: Shape, n_layers: int, device: str, threads: int) -> float:
    """Seconds of one optimizer step of ``shape`` at ``n_layers`` (the fastest of a few)."""
    import torch
    import torch.nn.functional as F

    from resnorm.config import TrainConfig
    from resnorm.nn.config import ModelConfig
    from resnorm.nn.model import build_model
    from resnorm.train.optim import build_optimizer

    batch = max(1, min(shape.batch_size, MEASURE_TOKENS // shape.seq_len))
    dev = torch.device(device)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            cfg = ModelConfig(
                d_model=shape.d_model,
                n_layers=n_layers,
                n_heads=shape.n_heads,
                d_ff=shape.d_ff,
                mlp=shape.mlp,
                vocab_size=shape.vocab_size,
                max_seq_len=shape.seq_len,
            )
            model = build_model(cfg).to(dev)
            optimizer = build_optimizer(model, TrainConfig())
            x = torch.randint(0, shape.vocab_size, (batch, shape.seq_len + 1), device=dev)
        best = float("inf")
        for i in range(3):  # the first step warms up kernels and allocations
            start = time.perf_counter()
            logits = model(x[:, :-1])
            loss = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if i:
                best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return best * shape.batch_size / batch


def local_workers() -> tuple[int, int, str]:
    """``(workers, threads, device)`` of the default local executor on this machine."""
    import torch

    from resnorm.lab.executors import make_executor

    ex = make_executor("local")
    return ex.workers, ex.threads, "cuda" if torch.cuda.is_available() else "cpu"


def format_duration(seconds: float) -> str:
    """``~40 s``, ``~3 min``, ``~2 h 10 min``."""
    if seconds < 90:
        return f"~{max(1, round(seconds / 10) * 10 if seconds >= 20 else round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"~{minutes} min"
    return f"~{minutes // 60} h {minutes % 60:02d} min"
