"""Shared settings of the built-in studies: scales, base configs, axis helpers.

``quick`` finishes in minutes on a 2-core CPU: the default model of `docs/studies.md` (decoder,
byte vocabulary, d_model 64, 4 heads, FFN 4d, context 64, batch 16, AdamW(0.9, 0.98)) on the
built-in corpus, a few hundred steps. ``full`` is GPU-sized: d_model 256, 8 heads, context 256,
batch 32, thousands of steps, bf16 where the device supports it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from resnorm.errors import choice_error
from resnorm.lab.spec import Axis

SCALES = ("quick", "full")

#: Signal-propagation claims at init are measured under Xavier init, the init of the papers
#: they come from (Vaswani et al. 2017, fairseq); resnorm's default N(0, 0.02) is shown beside.
PAPER_INIT = "xavier"
INITS = ("xavier", "normal")


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise choice_error("scale", scale, SCALES)
    return scale


def model(scale: str, **fields: Any) -> dict[str, Any]:
    """The default model of the studies at ``scale``, with ``fields`` changed."""
    base: dict[str, Any] = (
        {"d_model": 64, "n_heads": 4, "max_seq_len": 64}
        if scale == "quick"
        else {"d_model": 256, "n_heads": 8, "max_seq_len": 256}
    )
    return {**base, **fields}


def train_base(scale: str, steps: int, **train: Any) -> dict[str, Any]:
    """A training run's base config (model + data + train) at ``scale``."""
    quick = scale == "quick"
    t: dict[str, Any] = {
        "steps": steps,
        "lr": 1e-3,
        "warmup_steps": 0,
        "beta1": 0.9,
        "beta2": 0.98,
        "eval_every": 50 if quick else 250,
        "eval_batches": 4 if quick else 16,
        "log_every": 10,
        "probe_every": 0,
        "checkpoint_every": max(steps // 2, 1),
    }
    t.update(train)
    return {
        "model": model(scale),
        "data": {
            "source": "builtin",
            "seq_len": 64 if quick else 256,
            "batch_size": 16 if quick else 32,
        },
        "train": t,
    }


def probe_base(scale: str, probes: Sequence[str], **params: Any) -> dict[str, Any]:
    """A ``probe`` run's base config: the default model, one batch of the built-in corpus."""
    quick = scale == "quick"
    return {
        "model": model(scale),
        "batch": {"source": "builtin", "size": 8 if quick else 16, "seq_len": 64 if quick else 256},
        "probes": list(probes),
        "params": {k: dict(v) for k, v in params.items()},
    }


def seeds(scale: str, quick: int = 3, full: int = 5) -> tuple[int, ...]:
    return tuple(range(quick if scale == "quick" else full))


def variants(*points: Mapping[str, Any]) -> Axis:
    """A list axis of named variants (each point has a ``label``)."""
    return Axis("list", points=tuple(copy.deepcopy(dict(p)) for p in points))


def topo(name: str, label: str | None = None, **params: Any) -> dict[str, Any]:
    """A variant: a topology (with parameters), labelled by its name unless told."""
    point: dict[str, Any] = {"model.topology": name, "label": label or name}
    if params:
        point["model.topology_params"] = dict(params)
    return point


def where(**keys: Any) -> dict[str, Any]:
    """A ``where`` clause from keyword arguments, ``__`` for dots (``model__n_layers=24``)."""
    return {k.replace("__", "."): v for k, v in keys.items()}
