"""Training: the loop, AdamW groups and schedules, checkpoints, the divergence guard, DDP.

`train(RunConfig) -> TrainResult` trains, resumes or reports one run and gives back its model,
config and metric history (`resnorm.train.result`); `resnorm train` is its command line
(`resnorm.train.cli`). Before the first step it prints a summary (`resnorm.train.summary`);
``train.log`` mirrors the logged values to TensorBoard (`resnorm.train.sinks`).
"""

from __future__ import annotations

from resnorm.train.checkpoint import Checkpoint, checkpoint_dir, load_latest, load_weights
from resnorm.train.loop import INTERRUPTED_EXIT, TrainResult, evaluate, train
from resnorm.train.optim import build_optimizer, lr_at, lr_factor, param_groups

__all__ = [
    "INTERRUPTED_EXIT",
    "Checkpoint",
    "TrainResult",
    "build_optimizer",
    "checkpoint_dir",
    "evaluate",
    "load_latest",
    "load_weights",
    "lr_at",
    "lr_factor",
    "param_groups",
    "train",
]
