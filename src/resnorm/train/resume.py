"""Choosing the checkpoint a run resumes from: every field validated before anything is written.

A checkpoint comes from disk, so it is outside input: its JSON may have been edited and its
tensors file damaged. `find_resumable` checks the whole of each committed checkpoint, newest
first, against the run's model and optimizer: the JSON's fields and types (``step`` an integer
equal to the one in the file name, ``python_rng`` a state `random.setstate` accepts, ``last`` a
table of numbers, ...), the tensors' sha256, names, shapes and dtypes, and the RNG tensors.

Policy, chosen so that bad input never costs data:

- the newest checkpoint is good: resume from it;
- it is damaged but an earlier one is good: the damaged ones are moved aside (renamed to
  ``damaged-step-*.json``/``.safetensors``, never deleted) and the run resumes from the good one;
  the caller says so (an event in the run's log and a message);
- none is good: refuse with a `ConfigError` and change nothing. Starting over would delete the
  rows the run logged, so it is left to the user (who moves the files aside).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from resnorm.errors import ConfigError
from resnorm.train import checkpoint as ckpt_io
from resnorm.train.checkpoint import committed

OPTIM_KEYS = ("step", "exp_avg", "exp_avg_sq")
DAMAGED_PREFIX = "damaged-"


@dataclass(frozen=True)
class Damaged:
    """A checkpoint that failed validation: its committing JSON, why, and where it was moved."""

    path: Path
    reason: str
    moved_to: Path | None = None


def check_tensors(ckpt: ckpt_io.Checkpoint, model: nn.Module, optim: torch.optim.Optimizer) -> None:
    """ConfigError (``checkpoint``) unless the tensors are exactly this model's and optimizer's:
    every name expected and no other, each with the expected shape and dtype; optimizer state for
    every parameter or for none (a checkpoint at step 0); a well-formed RNG state."""
    where = f"checkpoint {ckpt.path}"
    expected: dict[str, tuple[tuple[int, ...], torch.dtype]] = {
        f"model.{k}": (tuple(t.shape), t.dtype) for k, t in ckpt_io.model_tensors(model).items()
    }
    params = [
        (name, p)
        for g in optim.param_groups
        for name, p in zip(g["names"], g["params"], strict=True)
    ]
    with_state = [n for n, _ in params if any(f"optim.{n}.{k}" in ckpt.tensors for k in OPTIM_KEYS)]
    if with_state:
        if len(with_state) != len(params):
            lost = sorted({n for n, _ in params} - set(with_state))
            raise ConfigError(
                "checkpoint", f"{where} lacks optimizer state of {', '.join(lost[:5])}"
            )
        for name, p in params:
            expected[f"optim.{name}.exp_avg"] = (tuple(p.shape), p.dtype)
            expected[f"optim.{name}.exp_avg_sq"] = (tuple(p.shape), p.dtype)
    missing = [k for k in expected if k not in ckpt.tensors]
    if with_state:
        missing += [f"optim.{n}.step" for n, _ in params if f"optim.{n}.step" not in ckpt.tensors]
    if "rng.torch" not in ckpt.tensors:
        missing.append("rng.torch")
    if missing:
        raise ConfigError("checkpoint", f"{where} lacks {', '.join(missing[:5])}: not this run")
    for key, (shape, dtype) in expected.items():
        t = ckpt.tensors[key]
        if tuple(t.shape) != shape or t.dtype != dtype:
            raise ConfigError(
                "checkpoint",
                f"{where}: {key} is {t.dtype} {tuple(t.shape)}, expected {dtype} {shape}",
            )
    rng = re.compile(r"rng\.(torch|cuda\.\d+)")
    step_keys = {f"optim.{n}.step" for n, _ in params}
    for key, t in ckpt.tensors.items():
        if key in expected:
            continue
        if with_state and key in step_keys:
            value = float(t.double().sum()) if t.numel() == 1 else math.nan
            if (
                t.shape != ()
                or not t.is_floating_point()
                or not (value >= 0 and value.is_integer())
            ):
                raise ConfigError("checkpoint", f"{where}: {key} is not a step count")
        elif rng.fullmatch(key):
            # torch.set_rng_state takes a 1-D uint8 byte state (CPU: 5056 bytes).
            size = torch.get_rng_state().numel() if key == "rng.torch" else None
            if t.dtype != torch.uint8 or t.dim() != 1 or (size and t.numel() != size):
                raise ConfigError("checkpoint", f"{where}: {key} is not an RNG state")
        else:
            raise ConfigError("checkpoint", f"{where} holds {key}, which this run does not have")


def find_resumable(
    folder: Path, run_id: str, model: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[ckpt_io.Checkpoint | None, list[Damaged]]:
    """The newest good checkpoint in ``folder`` and the damaged ones newer than it, moved aside.

    Returns:
        (None, []) when there is no checkpoint (a fresh start).

    Raises:
        ConfigError: (``checkpoint``) when every checkpoint is damaged; nothing is changed.
    """
    damaged: list[Damaged] = []
    for path in committed(folder) if folder.is_dir() else []:
        try:
            ckpt = ckpt_io.load_file(path, run_id)
            check_tensors(ckpt, model, optimizer)
        except ConfigError as e:
            damaged.append(Damaged(path, str(e).removeprefix("checkpoint: ")))
            continue
        return ckpt, [Damaged(d.path, d.reason, move_aside(d.path)) for d in damaged]
    if damaged:
        first = damaged[0]
        raise ConfigError(
            "checkpoint",
            f"{first.reason}; no earlier checkpoint is good, so nothing was changed. Move the "
            f"damaged files out of {folder} to start the run over from step 0 (its logged rows "
            "will be replaced)",
        )
    return None, []


def move_aside(json_path: Path) -> Path:
    """Rename a checkpoint's JSON and tensors to ``damaged-...`` (kept for inspection)."""
    target = json_path.with_name(DAMAGED_PREFIX + json_path.name)
    tensors = json_path.with_suffix(".safetensors")
    if tensors.exists():
        tensors.replace(tensors.with_name(DAMAGED_PREFIX + tensors.name))
    json_path.replace(target)
    return target
