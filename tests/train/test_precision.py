"""The trainer's precision policy (`resnorm.train.precision`): pinned values pass through, a
narrow CPU model stays fp32 without measuring, and the trainer owns the policy (it does not
reach into the ``doctor`` command module for it)."""

from __future__ import annotations

import ast
from pathlib import Path

import torch

import resnorm.train
from resnorm.train import precision
from resnorm.train.precision import BF16_MIN_D_MODEL, auto_precision, resolve_precision


def test_a_pinned_precision_is_used_as_set() -> None:
    assert resolve_precision("bf16", torch.device("cpu")) == ("bf16", "set by train.precision")
    assert resolve_precision("fp32", torch.device("cpu"))[0] == "fp32"


def test_a_narrow_model_on_a_cpu_stays_fp32_without_a_measurement(monkeypatch) -> None:
    def fail() -> dict[str, float]:
        raise AssertionError("measured matmuls for a model that stays fp32 anyway")

    monkeypatch.setattr(precision, "_cpu_peaks", fail)
    chosen, reason = auto_precision("cpu", BF16_MIN_D_MODEL // 4)
    assert chosen == "fp32" and "d_model" in reason


def test_no_training_module_imports_the_doctor_command() -> None:
    folder = Path(resnorm.train.__file__).parent
    offenders = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            offenders += [f"{path.name}:{node.lineno}" for n in names if n == "resnorm.doctor"]
    assert not offenders, offenders
