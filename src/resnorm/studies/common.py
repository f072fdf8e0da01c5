"""Shared settings of the built-in studies: scales, the shared protocol, base configs, axes.

``quick`` finishes in minutes on a 2-core CPU: the default model of `docs/studies.md` (decoder,
byte vocabulary, d_model 64, 4 heads, FFN 4d, context 64, batch 16, AdamW(0.9, 0.98)) on the
built-in corpus, a few hundred steps. ``full`` is GPU-sized: d_model 256, 8 heads, context 256,
batch 32, thousands of steps, bf16 where the device supports it.

Every topology compared in a study shares one init and embedding scale, the papers' own
(`PAPER_MODEL`): the Transformer of Vaswani et al. as fairseq builds it, on which Xiong et al.,
Liu et al. (Admin) and Wang et al. (DeepNet) all build: a ReLU FFN, Xavier-uniform matrices, token
embeddings N(0, 1/d) multiplied by sqrt(d) (so each token's ||x_0||^2 is about d). A
topology's own init (DeepNorm's beta, T-Fixup, Admin's omega) applies on top, as in its paper.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from resnorm.errors import choice_error
from resnorm.lab.spec import Axis, StudySpec

SCALES = ("quick", "full")

#: The papers' Transformer (Vaswani et al.; fairseq): Xavier-uniform matrices, embeddings
#: N(0, 1/d) times sqrt(d), a ReLU feed-forward (Vaswani et al. eq. 2, fairseq's default).
PAPER_MODEL: dict[str, Any] = {"init": "xavier", "embed_scale": True, "mlp": "relu"}

#: Where every study built on `PAPER_MODEL` departs from it: (what, why).
SHARED_DEPARTURES: tuple[tuple[str, str], ...] = (
    (
        "a decoder-only byte-level LM on the Python standard library's source (the built-in "
        "corpus) instead of translation (IWSLT/WMT) or BERT pre-training",
        "no download and minutes on 2 CPU cores",
    ),
    (
        "learned positions, N(0, 1/d) and unscaled, instead of sinusoidal ones",
        "resnorm has learned, RoPE or no positions; at init they are small beside the "
        "sqrt(d)-scaled tokens, as sinusoids are not",
    ),
)


def study(**fields: Any) -> StudySpec:
    """A `StudySpec` from its fields, with scalars, quantities, checks and figures in their
    table form (as a TOML study writes them); the spec validates them into the typed grammar
    (`resnorm.lab.grammar`) when it is built, so a malformed one fails at import."""
    return StudySpec(**fields)


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
    return {**base, **PAPER_MODEL, **fields}


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
