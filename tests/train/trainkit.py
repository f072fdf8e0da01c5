"""Helpers of the training tests: a tiny config, CLI runs as subprocesses, result comparison."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from resnorm.config import RunConfig, load_config
from resnorm.store import Store
from resnorm.train import load_weights

#: A model and task small enough that a step takes milliseconds on one core.
TINY_TOML = """\
name = "tiny"

[model]
vocab_size = 16
d_model = 16
n_layers = 2
n_heads = 2
max_seq_len = 16

[data]
source = "copy"
seq_len = 16
batch_size = 4
params = { vocab_size = 16 }

[train]
steps = 12
warmup_steps = 2
lr = 1e-2
log_every = 1
eval_every = 4
eval_batches = 1
probe_every = 4
checkpoint_every = 4
"""

#: Overrides of `TINY_TOML` that train each model kind (the decoder: none): a masked-LM encoder
#: on the built-in text (257 tokens: the bytes and [MASK]), an encoder-decoder on a pair task
#: with prompts of varying length (so the encoder gets an attention mask), and an
#: encoder-decoder on span-corrupted text (259: the bytes, the decoder start, 2 sentinels).
KINDS = {
    "decoder": [],
    "encoder": ["model.kind=encoder", "model.vocab_size=257", "data.source=builtin",
                "data.params={}"],
    "encoder_decoder": ["model.kind=encoder_decoder", "data.source=addition"],
    "span_corruption": ["model.kind=encoder_decoder", "model.vocab_size=259",
                        "data.source=builtin", "data.params={}"],
}  # fmt: skip

#: Metrics that depend on the wall clock, left out of exact comparisons.
TIMING = {"tokens_per_s"}


def tiny_config(lab: Path, overrides: Sequence[str] = ()) -> RunConfig:
    """The tiny config (from `TINY_TOML`) with overrides, writing to ``lab``."""
    path = lab.parent / f"{lab.name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TINY_TOML)
    return load_config(path, [*overrides, f'lab="{lab}"'])


def cli_command(config: Path, lab: Path, overrides: Sequence[str] = ()) -> list[str]:
    args = [sys.executable, "-m", "resnorm.train.cli", "--config", str(config), "--lab", str(lab)]
    for o in overrides:
        args += ["-o", o]
    return [*args, "--no-progress"]


def subprocess_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESNORM_TEST_")}
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    env["OMP_NUM_THREADS"] = "1"  # as the in-process runs (conftest), for bitwise comparisons
    env.update(extra or {})
    return env


def run_cli(
    config: Path, lab: Path, overrides: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m resnorm.train.cli ...`` in a real subprocess, to completion."""
    return subprocess.run(
        cli_command(config, lab, overrides),
        env=subprocess_env(env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_record(lab: Path) -> Any:
    """The only run in ``lab``'s store."""
    with Store(lab) as store:
        (record,) = store.runs()
        return record


def results(lab: Path) -> dict[str, Any]:
    """Everything a run produced that must be reproducible: status, exact metrics (no timing),
    diagnostics and final weights."""
    record = run_record(lab)
    with Store(lab) as store:
        metrics = [(m.step, m.name, m.value) for m in store.metrics(record.run_id)]
        diagnostics = list(store.diagnostics(record.run_id))
    return {
        "status": record.status,
        "metrics": [m for m in metrics if m[1] not in TIMING],
        "diagnostics": diagnostics,
        "weights": load_weights(lab, record.run_id),
    }


def assert_same_results(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Bitwise equality of two runs' `results` (NaN equals NaN)."""
    assert a["status"] == b["status"]
    assert [m[:2] for m in a["metrics"]] == [m[:2] for m in b["metrics"]]
    for ma, mb in zip(a["metrics"], b["metrics"], strict=True):
        assert ma[2] == mb[2] or (ma[2] != ma[2] and mb[2] != mb[2]), (ma, mb)
    assert a["diagnostics"] == b["diagnostics"]
    assert a["weights"].keys() == b["weights"].keys()
    for k in a["weights"]:
        assert torch.equal(a["weights"][k], b["weights"][k]), k


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (to check that nothing was written)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }
