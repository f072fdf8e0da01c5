"""The inits find their matrices through what `Attention` and `MLP` declare (READS / WRITES /
SCORES), and the contract fails loudly: a declared matrix that is missing, an undeclared linear
or a sublayer without declarations raises instead of being skipped (issue 12)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from modeltools import tiny
from resnorm import build_model
from resnorm.nn.init import INITS, residual_projections, stream_linears
from resnorm.nn.model import Transformer
from resnorm.nn.topologies import TOPOLOGIES
from resnorm.nn.topologies.ngpt import normalize_ngpt_weights_

KINDS = ["decoder", "encoder_decoder"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
@pytest.mark.parametrize("topology", TOPOLOGIES.names())
def test_declarations_cover_every_linear_with_the_stream_on_the_declared_side(
    topology: str, mlp: str, kind: str
) -> None:
    model = build_model(tiny(topology, mlp=mlp, kind=kind))
    d = model.cfg.d_model
    for stack in model.stacks():
        for layer in stack.layers:
            linears = {n for n, m in layer.named_modules() if isinstance(m, nn.Linear)}
            reads = dict(stream_linears(layer, "READS"))
            writes = dict(stream_linears(layer, "WRITES"))
            assert set(reads) | set(writes) == linears and not set(reads) & set(writes)
            assert all(m.in_features == d for m in reads.values()), "a read takes the stream"
            assert all(m.out_features == d for m in writes.values()), "a write outputs d_model"
            scores = [n for n, _ in stream_linears(layer, "SCORES")]
            sub = ("attn", "cross") if stack.spec.cross else ("attn",)
            assert scores == [f"{s}.{p}" for s in sub for p in ("q_proj", "k_proj")]
            gated = mlp == "swiglu"
            assert ("mlp.gate" in reads) == gated


def _deepnorm_init(model: Transformer) -> None:
    for stack in model.stacks():
        stack.topology.init_(stack)


INITS_BY_NAME: dict[str, tuple[str, Callable[[Transformer], None]]] = {
    "deepnorm": ("deepnorm", _deepnorm_init),
    "tfixup": ("tfixup", _deepnorm_init),
    "gpt2": ("pre_ln", INITS.get("gpt2", "model.init")),
    "depth_scaled": ("pre_ln", INITS.get("depth_scaled", "model.init")),
    "ngpt": ("ngpt", normalize_ngpt_weights_),
}


@pytest.mark.parametrize("name", sorted(INITS_BY_NAME))
@pytest.mark.parametrize("missing", ["attn.v_proj", "attn.o_proj", "mlp.down", "mlp.up"])
def test_a_missing_declared_matrix_raises_naming_it(name: str, missing: str) -> None:
    topology, init = INITS_BY_NAME[name]
    model = build_model(tiny(topology))
    sub, attr = missing.split(".")
    delattr(getattr(model.decoder.layers[1], sub), attr)
    with pytest.raises(AssertionError, match=rf"declares '{attr}' in READS/WRITES"):
        init(model)


@pytest.mark.parametrize("name", sorted(INITS_BY_NAME))
def test_an_undeclared_linear_raises_instead_of_being_skipped(name: str) -> None:
    topology, init = INITS_BY_NAME[name]
    model = build_model(tiny(topology))
    model.decoder.layers[0].mlp.extra = nn.Linear(4, 4)
    with pytest.raises(AssertionError, match=r"holds linears \['extra'\] that it does not declare"):
        init(model)


def test_a_sublayer_without_declarations_raises() -> None:
    model = build_model(tiny("pre_ln"))
    layer = model.decoder.layers[0]
    layer.mlp = nn.Sequential(nn.Linear(model.cfg.d_model, model.cfg.d_model))
    with pytest.raises(AssertionError, match=r"Sequential \(sublayer 'mlp'\) declares no READS"):
        residual_projections(model)


def test_ungated_mlp_leaves_out_its_optional_gate_only() -> None:
    model = build_model(tiny("pre_ln", mlp="gelu"))
    layer = model.decoder.layers[0]
    assert layer.mlp.gate is None
    assert [n for n, _ in stream_linears(layer, "READS")] == [
        "attn.q_proj",
        "attn.k_proj",
        "attn.v_proj",
        "mlp.up",
    ]


def test_gpt2_scales_exactly_the_declared_writes() -> None:
    torch.manual_seed(0)
    cfg = tiny("pre_ln", init="gpt2", n_layers=8, d_model=64, d_ff=256)
    model = build_model(cfg)
    writes = {id(m) for _, _, m in residual_projections(model)}
    assert len(writes) == 2 * cfg.n_layers
    expected = cfg.init_std / (2 * cfg.n_layers) ** 0.5
    for layer in model.decoder.layers:
        for name, linear in stream_linears(layer, "READS", "WRITES"):
            std = linear.weight.std().item()
            want = expected if id(linear) in writes else cfg.init_std
            assert std == pytest.approx(want, rel=0.1), name
