"""The start-of-run summary `train` prints before the first step, and the warnings in it.

It says what will run, in the terms a reader checks first: the config fields that differ from
the defaults, the parameter count, tokens per optimizer step, the precision and why it was
chosen, and the run folder. Warnings name a setting that makes the run mean something other
than it seems to: a schedule that never leaves warmup, or data the run repeats. `train` prints it
when ``summary`` is true (by default when its progress bar is on, so a study's workers, which
call ``train(..., progress=False)``, stay quiet).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from resnorm.config import RunConfig, TrainConfig
from resnorm.data import Data, DataConfig
from resnorm.nn.config import ModelConfig
from resnorm.typed import to_dict


def _flat(tree: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}.{key}"))
    return out


def non_default_fields(cfg: RunConfig) -> dict[str, Any]:
    """``{dotted field: value}`` for every field of ``cfg`` that differs from its default."""
    out: dict[str, Any] = {}
    for name, section, default in (
        ("model", cfg.model, ModelConfig()),
        ("data", cfg.data, DataConfig()),
        ("train", cfg.train, TrainConfig()),
    ):
        base = _flat(to_dict(default), name)
        out.update({k: v for k, v in _flat(to_dict(section), name).items() if base.get(k) != v})
    if cfg.parent is not None:
        out["parent"] = cfg.parent
    return out


def schedule_warnings(t: TrainConfig) -> list[str]:
    """Warmup that covers the whole run: the decay never starts, and the peak may never come."""
    if not t.warmup_steps or t.warmup_steps < t.steps:
        return []
    peak = t.steps / t.warmup_steps  # lr_factor of the last step, (steps - 1 + 1) / warmup
    reach = (
        f"it never reaches train.lr = {t.lr:g}, peaking at {t.lr * peak:.3g} ({peak:.0%})"
        if t.warmup_steps > t.steps
        else f"it reaches train.lr = {t.lr:g} only at the last step"
    )
    decay = "" if t.schedule == "constant" else f" and the {t.schedule} decay never starts"
    return [
        f"train.warmup_steps = {t.warmup_steps} >= train.steps = {t.steps}: the learning-rate "
        f"schedule never leaves warmup, so the rate rises linearly for the whole run: {reach}"
        f"{decay}. Lower train.warmup_steps or raise train.steps."
    ]


def data_warnings(cfg: RunConfig, data: Data) -> list[str]:
    """Training data smaller than the tokens the run reads: it sees the same text again."""
    n_train = getattr(data, "n_train", None)  # text data; synthetic tasks are unbounded
    if not n_train:
        return []
    tokens = cfg.train.steps * cfg.data.batch_size * cfg.data.seq_len
    if tokens <= n_train:
        return []
    return [
        f"the run reads {tokens:,} training tokens but the training split holds {n_train:,}: "
        f"about {tokens / n_train:.1f} epochs, so it sees the same text again and its training "
        "loss can fall by memorising while val_loss stalls or rises. Use more data "
        "(data.path) or fewer train.steps."
    ]


def start_summary(
    cfg: RunConfig,
    model: nn.Module,
    data: Data,
    precision: tuple[str, str],
    run_folder: Path,
    resumed_from: int | None = None,
) -> str:
    """The summary text (several lines, warnings last, each starting ``warning:``)."""
    n_params = sum(p.numel() for p in model.parameters())  # a tied head is counted once
    changed = non_default_fields(cfg)
    fields = ", ".join(f"{k}={v!r}" for k, v in changed.items()) or "(all defaults)"
    per_step = cfg.data.batch_size * cfg.data.seq_len
    start = f", resuming from step {resumed_from}" if resumed_from is not None else ""
    lines = [
        f"run {cfg.run_id}" + (f" ({cfg.name})" if cfg.name else "") + start,
        f"  config (non-default): {fields}",
        f"  parameters: {n_params:,}",
        f"  tokens per step: {per_step:,} (data.batch_size {cfg.data.batch_size} x data.seq_len "
        f"{cfg.data.seq_len}), {per_step * cfg.train.steps:,} over {cfg.train.steps} steps",
        f"  precision: {precision[0]} ({precision[1]})",
        f"  run folder: {run_folder}",
    ]
    warnings = schedule_warnings(cfg.train) + data_warnings(cfg, data)
    return "\n".join(lines + [f"warning: {w}" for w in warnings])
