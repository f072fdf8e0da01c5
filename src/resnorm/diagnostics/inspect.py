"""`resnorm inspect`: probes at init on a seeded random batch, printed as a plain-text table.

``inspect_comparison()`` is the at-init part of the demo: per-layer gradient norms of the FFN
second matrix W2 (``mlp.down.weight``) and the residual-stream RMS for Post-LN and Pre-LN at
several depths, with the last/first-layer gradient ratio of each (Xiong et al. 2020,
arXiv:2002.04745: > 1 for Post-LN, < 1 for Pre-LN). ``python -m resnorm.diagnostics`` prints
it. Any other probe's per-layer measurements get columns of their own, its model-wide ones a
place in the summary line.

The batch shape, seed and probe names are checked before a model is built, and a model and
batch this machine cannot hold are refused with the estimate (`resnorm.memory`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from resnorm.diagnostics.base import PROBES, Batch, Record
from resnorm.diagnostics.probes import run_at_init
from resnorm.errors import ConfigError
from resnorm.memory import check_model_fits
from resnorm.nn.config import ModelConfig
from resnorm.nn.model import build_model

W2 = "mlp.down.weight"
#: The small default shape of ``inspect_comparison``: finishes in seconds on a CPU.
SMALL = {"d_model": 64, "n_heads": 4, "vocab_size": 256}
#: The probes the fixed columns show (W2 and sublayer gradients, stream RMS after each layer).
FIXED = ("grad_norm", "stream_rms")
MAX_BATCH, MAX_SEED = 2**16, 2**63 - 1


def check_inputs(
    cfg: ModelConfig, batch_size: int, seq_len: int, seed: int, probes: Sequence[str]
) -> None:
    """Refuse, naming the argument, what would give NaN tables, tracebacks or an allocation
    this machine cannot make: the batch shape, the seed, unknown probe names."""
    for name, value, low, high in (
        ("batch_size", batch_size, 1, MAX_BATCH),
        ("seq_len", seq_len, 1, cfg.max_seq_len),
        ("seed", seed, 0, MAX_SEED),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            bound = "model.max_seq_len = " if name == "seq_len" else ""
            raise ConfigError(name, f"must be an integer in [{low}, {bound}{high}], got {value!r}")
    if not probes:
        raise ConfigError("probes", f"none given; valid: {', '.join(PROBES.names())}")
    for name in probes:
        PROBES.get(name, "probes")
    # update_ratio steps an Adam optimizer: its two moments join weights and gradients.
    moments = "update_ratio" in probes
    check_model_fits(
        cfg,
        batch_size,
        seq_len,
        doing="probing this model",
        held="weights, gradients" + (" and Adam moments" if moments else ""),
        per_param=16 if moments else 8,
        per_number=4,
        batch_field="batch_size",
    )


def random_batch(cfg: ModelConfig, batch_size: int, seq_len: int, seed: int = 0) -> Batch:
    """Uniform random tokens with next-token targets: ``(inputs, targets)`` for ``run_at_init``.

    ``encoder_decoder``: inputs are ``{"input_ids", "decoder_input_ids"}`` (source and shifted
    target sequences of ``seq_len`` tokens each).
    """
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg.vocab_size, (batch_size, seq_len + 1), generator=gen)
    if cfg.kind != "encoder_decoder":
        return ids[:, :-1], ids[:, 1:]
    source = torch.randint(0, cfg.vocab_size, (batch_size, seq_len), generator=gen)
    return {"input_ids": source, "decoder_input_ids": ids[:, :-1]}, ids[:, 1:]


def inspect_model(
    cfg: ModelConfig,
    *,
    batch_size: int = 8,
    seq_len: int = 64,
    seed: int = 0,
    probes: Sequence[str] = ("grad_norm", "stream_rms"),
) -> list[Record]:
    """Build ``cfg`` with torch seeded by ``seed`` and run ``probes`` at init on a seeded random
    batch. The caller's global RNG state is left untouched. A ConfigError (`check_inputs`)
    names a bad argument before anything is built."""
    check_inputs(cfg, batch_size, seq_len, seed, probes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(cfg)
    return run_at_init(model, random_batch(cfg, batch_size, seq_len, seed), probes)


def _stacks(records: Sequence[Record]) -> list[str]:
    found = {r.key.split(".")[0] for r in records if r.layer is not None}
    return [s for s in ("encoder", "decoder") if s in found]


def _per_layer(records: Sequence[Record], probe: str, key: str) -> dict[int, float]:
    return {
        r.layer: r.value
        for r in records
        if r.probe == probe and r.key == key and r.layer is not None
    }


def grad_ratio(records: Sequence[Record], key: str | None = None) -> float:
    """Last-layer / first-layer gradient norm of ``key`` (default: W2 of the output stack)."""
    if key is None:
        stacks = _stacks(records)
        assert stacks, "grad_ratio: no per-layer records"
        key = f"{stacks[-1]}.{W2}"
    norms = _per_layer(records, "grad_norm", key)
    assert norms, f"grad_ratio: no grad_norm records for {key!r}"
    first, last = norms[min(norms)], norms[max(norms)]
    return last / first if first > 0 else math.inf


def format_table(records_by_config: Mapping[str, Sequence[Record]]) -> str:
    """Plain aligned text: per config and stack, one row per layer with the gradient norms of
    W2 and of each sublayer, and the stream RMS after the layer; then one summary line per
    config (W2 gradient last/first layer, stream RMS last layer / embedding)."""
    blocks, summary = [], []
    for name, records in records_by_config.items():
        for stack in _stacks(records):
            columns = [("|grad W2|", "grad_norm", f"{stack}.{W2}")]
            for s in ("attn", "cross", "mlp"):
                columns.append((f"|grad {s}|", "grad_norm", f"{stack}.{s}"))
            columns.append(("stream rms", "stream_rms", f"{stack}.mlp"))
            columns += _other_columns(records, stack)
            data = [(h, _per_layer(records, p, k)) for h, p, k in columns]
            data = [(h, d) for h, d in data if d]
            layers = sorted({i for _, d in data for i in d})
            header = ["layer", *[h for h, _ in data]]
            rows = [[str(i), *[_num(d.get(i)) for _, d in data]] for i in layers]
            blocks.append(f"{name} · {stack}\n{_align([header, *rows])}")
        summary.append(_summary(name, records))
    return "\n\n".join(blocks) + "\n\n" + "\n".join(summary)


def _other_columns(records: Sequence[Record], stack: str) -> list[tuple[str, str, str]]:
    """``(header, probe, key)`` of each per-layer series of a probe outside `FIXED`, at the
    layer (``decoder``) or sublayer (``decoder.attn``) level; per-tensor series are left out."""
    found: dict[tuple[str, str], None] = {}
    for r in records:
        if r.probe in FIXED or r.layer is None:
            continue
        where = r.key.split(".")
        if where[0] == stack and len(where) <= 2:
            found[(r.probe, r.key)] = None
    return [(" ".join([p, *k.split(".")[1:]]), p, k) for p, k in found]


def _summary(name: str, records: Sequence[Record]) -> str:
    stacks, parts = _stacks(records), []
    stack = stacks[-1] if stacks else ""
    if stack and _per_layer(records, "grad_norm", f"{stack}.{W2}"):
        parts.append(f"W2 grad last/first = {grad_ratio(records):.3f}")
    rms_layers = _per_layer(records, "stream_rms", f"{stack}.mlp")
    embed = [r.value for r in records if r.probe == "stream_rms" and r.key == f"{stack}.embed"]
    if rms_layers and embed:
        parts.append(f"stream rms last/embed = {rms_layers[max(rms_layers)] / embed[0]:.3f}")
    # Model-wide values of the other probes (output_change, update_ratio of the whole model).
    for r in records:
        if r.probe not in FIXED and r.layer is None and "." not in r.key:
            parts.append(f"{' '.join(filter(None, (r.probe, r.key)))} = {r.value:.3e}")
    return f"{name}: " + ("; ".join(parts) or "nothing to summarize")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3e}"


def _align(rows: list[list[str]]) -> str:
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows)


def compare(
    topologies: Sequence[str] = ("post_ln", "pre_ln"),
    depths: Sequence[int] = (6, 12, 24),
    *,
    batch_size: int = 8,
    seq_len: int = 64,
    seed: int = 0,
    probes: Sequence[str] = ("grad_norm", "stream_rms"),
    **model_fields: Any,
) -> dict[str, list[Record]]:
    """``inspect_model`` for each topology x depth, keyed ``"<topology> L=<depth>"``; model
    fields default to the small shape ``SMALL`` (d_model 64, 4 heads, vocab 256). Every cell's
    config and inputs are checked before the first model is built."""
    for axis, name in (("topology", "topologies"), ("n_layers", "depths")):
        if axis in model_fields:
            raise ConfigError(axis, f"set by the {name} argument of the comparison")
    fields = {**SMALL, **model_fields}
    configs = {
        f"{t} L={n}": ModelConfig(topology=t, n_layers=n, **fields)
        for t in topologies
        for n in depths
    }
    shape = {"batch_size": batch_size, "seq_len": seq_len, "seed": seed}
    for cfg in configs.values():
        check_inputs(cfg, probes=probes, **shape)
    return {name: inspect_model(cfg, probes=probes, **shape) for name, cfg in configs.items()}


def inspect_comparison(
    topologies: Sequence[str] = ("post_ln", "pre_ln"),
    depths: Sequence[int] = (6, 12, 24),
    **shape: Any,
) -> str:
    """The table of :func:`format_table` for each topology x depth (see :func:`compare` for
    ``shape``: ``batch_size``, ``seq_len``, ``seed`` and any ``ModelConfig`` field)."""
    return format_table(compare(topologies, depths, **shape))
