"""Helpers of the eval and runs tests: a tiny byte-level run on a small generated text."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

from resnorm.config import RunConfig, load_config
from resnorm.train import TrainResult, train

#: A byte-level model small enough that a step takes milliseconds on one core.
TEXT_TOML = """\
name = "text"

[model]
d_model = 16
n_layers = 2
n_heads = 2
max_seq_len = 16

[data]
source = "text"
seq_len = 16
batch_size = 4

[train]
steps = 3
warmup_steps = 1
lr = 1e-2
log_every = 1
eval_every = 0
eval_batches = 1
probe_every = 0
device = "cpu"
"""


def write_text(path: Path, n_words: int, seed: int = 0) -> Path:
    """Words drawn from a small vocabulary, so a tiny model learns something in a few steps."""
    rng = random.Random(seed)
    words = [
        "the",
        "cat",
        "sat",
        "on",
        "a",
        "mat",
        "and",
        "ran",
        "to",
        "the",
        "hat",
        "while",
        "a",
        "dog",
        "ate",
    ]
    path.write_text(" ".join(rng.choice(words) for _ in range(n_words)))
    return path


def text_config(tmp: Path, overrides: Sequence[str] = ()) -> RunConfig:
    """The tiny text run writing to ``tmp/lab``, trained on ``tmp/train.txt``."""
    corpus = tmp / "train.txt"
    if not corpus.exists():
        write_text(corpus, 1500)
    toml = tmp / "text.toml"
    toml.write_text(TEXT_TOML)
    return load_config(toml, [f'data.path="{corpus}"', f'lab="{tmp / "lab"}"', *overrides])


def train_text(tmp: Path, overrides: Sequence[str] = ()) -> TrainResult:
    return train(text_config(tmp, overrides), progress=False)
