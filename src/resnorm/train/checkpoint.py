"""Checkpoints: safetensors for tensors + JSON for the rest; atomic writes, no pickle on load.

A checkpoint at step ``k`` (the state after ``k`` optimizer steps) is two files in
``<lab>/runs/<run_id>/checkpoints/``::

    step-00000100.safetensors   model.<name> (parameters and buffers, tied weights once),
                                optim.<name>.<exp_avg|exp_avg_sq|step>, rng.torch, rng.cuda.<i>
    step-00000100.json          run_id, step, the tensors file's sha256, Python's RNG state, ...

Each file is written to a temporary file in the same folder, fsynced, moved into place with
``os.replace`` and the folder fsynced. The tensors go first; the JSON, written last, commits
the checkpoint, and the newest JSON names the checkpoint to resume from. A crash at any point
leaves either the previous checkpoint or the new one, never a mix: an orphan tensors file or
temporary file is ignored and cleaned up by the next save.

Loading reads the JSON, checks every field (`check_meta`) and the tensors' hash, and parses them
with safetensors (no pickle, no ``torch.load``). Anything truncated, edited, foreign or
incomplete raises a `ConfigError` (field ``checkpoint``) before any file is written; which
checkpoint a run resumes from, checked against its model, is `resnorm.train.resume`'s choice.
A failed write (disk full, read-only folder) removes its temporary file and re-raises.

Test hook: ``RESNORM_TEST_KILL_IN_CHECKPOINT=<step>:<point>`` makes the writer SIGKILL its own
process at step ``<step>``, with ``<point>`` ``tensors`` (the temporary tensors file written and
fsynced, not yet renamed) or ``json`` (tensors in place, the committing JSON not yet renamed):
real crash points, used by ``tests/train/test_resume.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn

from resnorm.errors import ConfigError

FORMAT = 1
KILL_HOOK = "RESNORM_TEST_KILL_IN_CHECKPOINT"
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass
class Checkpoint:
    """A loaded checkpoint: its step, tensors (flat, stable keys) and JSON metadata."""

    step: int
    tensors: dict[str, Tensor]
    meta: dict[str, Any]
    path: Path

    def model_state(self) -> dict[str, Tensor]:
        """The model's tensors, keyed by their state-dict names."""
        return {k[6:]: v for k, v in self.tensors.items() if k.startswith("model.")}


def checkpoint_dir(lab: str | Path, run_id: str) -> Path:
    return Path(lab) / "runs" / run_id / "checkpoints"


def _name(step: int) -> str:
    return f"step-{step:08d}"


# --- capturing and restoring state --------------------------------------------------------------
def model_tensors(model: nn.Module) -> dict[str, Tensor]:
    """The model's state-dict tensors, each storage once (a tied head is saved as the embedding)."""
    out: dict[str, Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for name, t in model.state_dict().items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset())
        if key in seen:
            continue
        seen.add(key)
        out[name] = t
    return out


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
    """``{"<param name>.<state key>": tensor}``; needs a ``names`` list in each param group."""
    out: dict[str, Tensor] = {}
    for group in optimizer.param_groups:
        for name, p in zip(group["names"], group["params"], strict=True):
            for key, value in optimizer.state.get(p, {}).items():
                assert isinstance(value, Tensor), f"non-tensor optimizer state {name}.{key}"
                out[f"{name}.{key}"] = value
    return out


def capture(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Tensor]:
    """Every tensor a checkpoint holds, copied to the CPU."""
    tensors = {f"model.{k}": v for k, v in model_tensors(model).items()}
    tensors.update({f"optim.{k}": v for k, v in optimizer_tensors(optimizer).items()})
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}


def restore(ckpt: Checkpoint, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Put a checkpoint's tensors into ``model``, ``optimizer`` and the RNGs (bitwise)."""
    check_keys(ckpt, model, optimizer)
    with torch.no_grad():
        for name, t in model_tensors(model).items():
            t.copy_(ckpt.tensors[f"model.{name}"])
    for group in optimizer.param_groups:
        for name, p in zip(group["names"], group["params"], strict=True):
            state = {}
            for key in ("step", "exp_avg", "exp_avg_sq"):
                value = ckpt.tensors.get(f"optim.{name}.{key}")
                if value is not None:
                    # AdamW keeps `step` on the CPU unless fused/capturable.
                    state[key] = value.clone() if key == "step" else value.to(p.device, copy=True)
            if state:
                optimizer.state[p] = state
    torch.set_rng_state(ckpt.tensors["rng.torch"])
    cuda = sorted(k for k in ckpt.tensors if k.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([ckpt.tensors[k] for k in cuda])
    py = ckpt.meta.get("python_rng")
    if py is not None:
        random.setstate((py[0], tuple(py[1]), py[2]))


def check_keys(ckpt: Checkpoint, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """ConfigError unless the checkpoint holds every model tensor, with the right shapes, and
    optimizer state for every parameter or for none (a checkpoint at step 0)."""
    where = f"checkpoint {ckpt.path}"
    expected = model_tensors(model)
    missing = [k for k in expected if f"model.{k}" not in ckpt.tensors]
    if missing:
        raise ConfigError("checkpoint", f"{where} lacks {', '.join(missing[:5])}: not this model")
    for k, t in expected.items():
        if tuple(ckpt.tensors[f"model.{k}"].shape) != tuple(t.shape):
            got = tuple(ckpt.tensors[f"model.{k}"].shape)
            raise ConfigError(
                "checkpoint", f"{where}: {k} has shape {got}, expected {tuple(t.shape)}"
            )
    names = [n for g in optimizer.param_groups for n in g["names"]]
    have = [n for n in names if f"optim.{n}.exp_avg" in ckpt.tensors]
    if have and len(have) != len(names):
        lost = sorted(set(names) - set(have))
        raise ConfigError("checkpoint", f"{where} lacks optimizer state of {', '.join(lost[:5])}")
    if "rng.torch" not in ckpt.tensors:
        raise ConfigError("checkpoint", f"{where} lacks the RNG state")


# --- files ----------------------------------------------------------------------------------------
def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _maybe_crash(step: int, point: str) -> None:
    """The test hook (see the module docstring): a real SIGKILL at a named point."""
    if os.environ.get(KILL_HOOK) == f"{step}:{point}":
        os.kill(os.getpid(), signal.SIGKILL)


def atomic_write(path: Path, data: bytes, *, step: int = -1, point: str = "") -> None:
    """Write ``data`` to ``path``: temporary file in the same folder, fsync, rename, fsync."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        _maybe_crash(step, point)
        os.replace(tmp, path)
    except BaseException:
        # Disk full or read-only: leave no half-written file behind (a SIGKILL skips this and
        # the next save cleans up instead).
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def save(
    folder: Path, step: int, tensors: dict[str, Tensor], meta: dict[str, Any], keep: int = 1
) -> Path:
    """Write the checkpoint of ``step`` atomically, then drop all but the newest ``keep``.

    Returns:
        The committing JSON file.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".*.tmp-*"):  # left by a killed writer
        stale.unlink(missing_ok=True)
    blob = save_safetensors(tensors)
    tensors_path = folder / f"{_name(step)}.safetensors"
    atomic_write(tensors_path, blob, step=step, point="tensors")
    state = random.getstate()
    meta = {
        **meta,
        "format": FORMAT,
        "step": step,
        "tensors": tensors_path.name,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "python_rng": [state[0], list(state[1]), state[2]],
    }
    json_path = folder / f"{_name(step)}.json"
    text = json.dumps(meta, indent=1, sort_keys=True)
    atomic_write(json_path, text.encode(), step=step, point="json")
    for old in committed(folder)[keep:]:
        old.unlink(missing_ok=True)
        old.with_suffix(".safetensors").unlink(missing_ok=True)
    for orphan in folder.glob("step-*.safetensors"):  # tensors whose JSON never committed
        if not orphan.with_suffix(".json").exists():
            orphan.unlink(missing_ok=True)
    return json_path


def committed(folder: Path) -> list[Path]:
    """Committing JSON files, newest first."""
    found = []
    for p in folder.glob("step-*.json"):
        try:
            found.append((int(p.stem[5:]), p))
        except ValueError:
            continue
    return [p for _, p in sorted(found, reverse=True)]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_meta(meta: object, path: Path, run_id: str) -> int:
    """The checkpoint's step, after checking every JSON field; ConfigError (``checkpoint``) if not.

    ``step`` must be the step in the file name: a checkpoint is found by its name, so a JSON
    that disagrees with it was edited or misplaced.
    """

    def bad(why: str) -> ConfigError:
        return ConfigError("checkpoint", f"{path}: {why}")

    if not isinstance(meta, dict):
        raise bad(f"expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise bad(f"format {meta.get('format')!r}, expected {FORMAT}")
    if meta.get("run_id") != run_id:
        raise bad(f"belongs to run {meta.get('run_id')!r}, not {run_id!r}")
    step = meta.get("step")
    try:
        named = int(path.stem.removeprefix("step-"))
    except ValueError:
        raise bad("the file name is not step-<N>.json") from None
    if not _is_int(step) or step != named:
        raise bad(f"step {step!r} is not the integer {named} of its file name")
    if meta.get("tensors") != f"{path.stem}.safetensors":
        raise bad(f"tensors {meta.get('tensors')!r}, expected {path.stem}.safetensors")
    if not isinstance(meta.get("sha256"), str) or not _SHA256.fullmatch(meta["sha256"]):
        raise bad(f"sha256 {meta.get('sha256')!r} is not a hex digest")
    _check_python_rng(meta.get("python_rng"), bad)
    last = meta.get("last", {})
    if not isinstance(last, dict) or not all(
        isinstance(k, str) and _is_number(v) for k, v in last.items()
    ):
        raise bad(f"last {last!r} is not a table of numbers")
    world_size = meta.get("world_size", 1)
    if not _is_int(world_size) or world_size < 1:
        raise bad(f"world_size {world_size!r} is not a positive integer")
    if not isinstance(meta.get("config", {}), dict):
        raise bad("config is not a table")
    return named


def _check_python_rng(state: object, bad: Callable[[str], ConfigError]) -> None:
    """``state`` is None or ``[version, [625 ints], gauss]`` that `random.setstate` accepts."""
    if state is None:
        return
    if not isinstance(state, list) or len(state) != 3 or not isinstance(state[1], list):
        raise bad("python_rng is not [version, [state], gauss]")
    if not all(_is_int(x) for x in state[1]) or not _is_int(state[0]):
        raise bad("python_rng holds a value that is not an integer")
    if state[2] is not None and not isinstance(state[2], float):
        raise bad(f"python_rng gauss {state[2]!r} is not a float or null")
    try:  # the interpreter's own check (length, word range), on a throwaway generator
        random.Random().setstate((state[0], tuple(state[1]), state[2]))
    except (ValueError, TypeError, OverflowError) as e:
        raise bad(f"python_rng is not a Python RNG state ({e})") from None


def load_file(path: Path, run_id: str) -> Checkpoint:
    """The checkpoint ``path`` commits, its JSON checked (`check_meta`) and its tensors' hash.

    Raises:
        ConfigError: (field ``checkpoint``) if it is truncated, corrupt, edited or of another run.
    """
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError("checkpoint", f"{path} is truncated or corrupt ({e})") from None
    except RecursionError:  # a JSON nested past the parser's stack: no checkpoint writes that
        raise ConfigError("checkpoint", f"{path} is corrupt (nested too deeply)") from None
    step = check_meta(meta, path, run_id)
    tensors_path = path.with_suffix(".safetensors")
    try:
        blob = tensors_path.read_bytes()
    except OSError as e:
        raise ConfigError("checkpoint", f"{path}: cannot read its tensors ({e})") from None
    if hashlib.sha256(blob).hexdigest() != meta["sha256"]:
        raise ConfigError("checkpoint", f"{tensors_path} does not match its sha256 (damaged)")
    try:
        tensors = load_safetensors(blob)
    except Exception as e:  # safetensors raises its own error type
        raise ConfigError("checkpoint", f"{tensors_path} is not readable ({e})") from None
    return Checkpoint(step, tensors, meta, path)


def load_latest(folder: Path, run_id: str) -> Checkpoint | None:
    """The newest committed checkpoint in ``folder``, or None if there is none.

    Raises:
        ConfigError: (field ``checkpoint``) if it is truncated, corrupt or of another run.
    """
    found = committed(folder) if folder.is_dir() else []
    if not found:
        return None
    try:
        return load_file(found[0], run_id)
    except ConfigError as e:
        fix = f"delete {folder} to start the run over"
        raise ConfigError("checkpoint", f"{str(e).removeprefix('checkpoint: ')}; {fix}") from None


def load_weights(lab: str | Path, run_id: str) -> dict[str, Tensor]:
    """The model tensors of a run's newest checkpoint (after a finished run: its final weights).

    Raises:
        ConfigError: if the run has no checkpoint or it is unreadable.
    """
    folder = checkpoint_dir(lab, run_id)
    ckpt = load_latest(folder, run_id)
    if ckpt is None:
        raise ConfigError("checkpoint", f"no checkpoint of run {run_id} in {folder}")
    return ckpt.model_state()
