"""Helpers of the lab tests: a tiny study (probe and training parts) as TOML, CLI subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from resnorm.lab.spec import StudySpec, load_study

_TINY_MODEL = "{ vocab_size = 16, d_model = 16, n_heads = 2, max_seq_len = 16 }"

#: Two parts: probes at init (4 points x 2 seeds, milliseconds each) and tiny training runs
#: (2 topologies x 2 seeds, 12 steps on the built-in corpus), with a figure of every type.
TINY_STUDY = f"""\
name = "tiny"
title = "A tiny study"
claim = "Pre-LN's last-layer gradient at init is positive and training lowers the loss"
source = "the test suite"

[[parts]]
name = "init"
run = "probe"
seeds = [0, 1]
axes = [ {{ grid = {{ "model.topology" = ["post_ln", "pre_ln"], "model.n_layers" = [2, 4] }} }} ]

[parts.base]
model = {_TINY_MODEL}
batch = {{ source = "random", size = 2, seq_len = 8 }}
probes = ["grad_norm", "stream_rms"]

[[parts]]
name = "train"
run = "train"
seeds = [0, 1]
after = ["layer_drop"]
axes = [ {{ grid = {{ "model.topology" = ["pre_ln", "post_ln"], "model.n_layers" = [2] }} }} ]

[parts.base]
model = {{ vocab_size = 256, d_model = 16, n_heads = 2, max_seq_len = 16 }}
data = {{ source = "builtin", seq_len = 16, batch_size = 4 }}

[parts.base.train]
steps = 12
warmup_steps = 2
lr = 1e-2
log_every = 1
eval_every = 4
eval_batches = 1
probe_every = 4
checkpoint_every = 4
probes = ["stream_rms"]

[scalars]
w2_last = {{ probe = "grad_norm", key = "decoder.mlp.down.weight", layer = "last" }}
drop = {{ probe = "layer_drop", key = "decoder", step = "last", reduce = "max" }}

[quantities]
pre = {{ of = "w2_last", where = {{ part = "init", "model.topology" = "pre_ln" }} }}
loss_pre = {{ of = "final_loss", where = {{ part = "train", "model.topology" = "pre_ln" }} }}
uniform = {{ of = "uniform_loss", where = {{ part = "train" }} }}
gain = {{ expr = "uniform - loss_pre" }}

[quantities.slope_pre]
slope = "w2_last"
x = "model.n_layers"
where = {{ part = "init", "model.topology" = "pre_ln" }}

[[checks]]
expr = "pre > 0"
label = "a gradient reaches W2"

[[checks]]
expr = "gain > -1"
per_seed = true
min_seeds = 2
label = "the loss is finite"

[[figures]]
type = "layers"
probe = "grad_norm"
key = "decoder.mlp.down.weight"
where = {{ part = "init" }}
series = "model.topology"
panels = "model.n_layers"
title = "gradient per layer"

[[figures]]
type = "scaling"
y = "w2_last"
x = "model.n_layers"
where = {{ part = "init" }}
series = "model.topology"
logx = true
logy = true

[[figures]]
type = "heatmap"
value = "final_loss"
x = "model.n_layers"
y = "model.n_layers"
panels = "model.topology"
where = {{ part = "train" }}

[[figures]]
type = "curves"
metric = "loss"
where = {{ part = "train" }}
series = "model.topology"
hline = "uniform_loss"

[[figures]]
type = "bars"
value = "final_loss"
x = "model.topology"
where = {{ part = "train" }}
"""

#: Planned runs of `TINY_STUDY`: 8 probe runs + 4 training runs, all distinct.
TINY_RUNS = 12
TINY_TRAIN_RUNS = 4


def tiny_study(folder: Path) -> tuple[Path, StudySpec]:
    """`TINY_STUDY` written to ``folder/tiny.toml`` and loaded."""
    path = folder / "tiny.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TINY_STUDY)
    return path, load_study(path)


def lab_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "resnorm", *args]


def run_cli(
    args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        lab_command(*args), capture_output=True, text=True, timeout=timeout, env=full_env
    )
