"""Each topology's forward pass equals its equation (../shared/docs/topologies.md) computed by
hand from the model's own modules, on 2-layer models with noisy weights."""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from modeltools import branch, noisy, tiny, tokens
from resnorm.nn.model import Transformer
from resnorm.nn.topologies import TOPOLOGIES


def manual(model: Transformer, ids: Tensor, step: Callable[..., Tensor]) -> Tensor:
    """Decoder-only forward with ``step(layer, s, x, F)`` applied to every sublayer by hand."""
    stack = model.decoder
    ctx = model.context(ids, True, None)
    x = model.embed(ids)
    if stack.embed_norm is not None:
        x = stack.embed_norm(x)
    for layer in stack.layers:
        for s in ("attn", "mlp"):
            x = step(layer, s, x, branch(layer, s, ctx))
    return stack.final_norm(x) if stack.final_norm is not None else x


def n(layer: Any, name: str) -> Any:
    return getattr(layer, name)


# name -> (topology params, per-sublayer rule written from the table, has final norm)
RULES: dict[str, tuple[dict[str, Any], Callable[..., Tensor], bool]] = {
    "post_ln": ({}, lambda L, s, x, F: n(L, f"norm_{s}")(x + F(x)), False),
    "pre_ln": ({}, lambda L, s, x, F: x + F(n(L, f"norm_{s}")(x)), True),
    "no_residual": ({}, lambda L, s, x, F: F(n(L, f"norm_{s}")(x)), True),
    "sandwich_ln": (
        {},
        lambda L, s, x, F: x + n(L, f"post_norm_{s}")(F(n(L, f"norm_{s}")(x))),
        True,
    ),
    "res_post_ln": ({}, lambda L, s, x, F: x + n(L, f"norm_{s}")(F(x)), True),
    "lns": (
        {},
        lambda L, s, x, F: x + F(n(L, f"norm_{s}")(x) / math.sqrt(L.index + 1)),
        True,
    ),
    "deepnorm": (
        {"alpha": 1.7},
        lambda L, s, x, F: n(L, f"norm_{s}")(1.7 * x + F(x)),
        False,
    ),
    "admin": ({}, lambda L, s, x, F: n(L, f"norm_{s}")(n(L, f"omega_{s}") * x + F(x)), False),
    "rezero": ({}, lambda L, s, x, F: x + L.gate * F(x), False),
    "layerscale": (
        {},
        lambda L, s, x, F: x + n(L, f"scale_{s}") * F(n(L, f"norm_{s}")(x)),
        True,
    ),
    "tfixup": ({}, lambda L, s, x, F: x + F(x), False),
    "no_norm": ({}, lambda L, s, x, F: x + F(x), False),
}


@pytest.mark.parametrize("name", sorted(RULES))
def test_forward_is_the_equation(name: str) -> None:
    params, rule, final = RULES[name]
    model = noisy(tiny(name, topology_params=params))
    ids = tokens(model.cfg)
    assert (model.decoder.final_norm is not None) == final
    torch.testing.assert_close(model.hidden(ids), manual(model, ids, rule), rtol=0, atol=0)


def test_peri_ln_normalizes_embeddings_then_sandwiches() -> None:
    model = noisy(tiny("peri_ln"))
    ids = tokens(model.cfg)
    rule = RULES["sandwich_ln"][1]
    assert model.decoder.embed_norm is not None
    torch.testing.assert_close(model.hidden(ids), manual(model, ids, rule), rtol=0, atol=0)


@pytest.mark.parametrize("a, n_post", [(0.25, 1), (0.5, 2), (0.75, 3)])
def test_mix_ln_first_floor_aL_layers_post_ln_rest_pre_ln(a: float, n_post: int) -> None:
    model = noisy(tiny("mix_ln", n_layers=4, topology_params={"post_fraction": a}))
    ids = tokens(model.cfg)

    def rule(L: Any, s: str, x: Tensor, F: Any) -> Tensor:
        N = n(L, f"norm_{s}")
        return N(x + F(x)) if L.index < n_post else x + F(N(x))

    torch.testing.assert_close(model.hidden(ids), manual(model, ids, rule), rtol=0, atol=0)


def test_b2t_adds_layer_input_before_last_norm() -> None:
    model = noisy(tiny("b2t"))
    ids = tokens(model.cfg)
    ctx = model.context(ids, True, None)
    x = model.embed(ids)
    for L in model.decoder.layers:
        h = L.norm_attn(x + L.attn(x, ctx))  # h = N(x + Attn(x))
        x = L.norm_mlp(h + L.mlp(h) + x)  # y = N(h + FFN(h) + x)
    torch.testing.assert_close(model.hidden(ids), x, rtol=0, atol=0)


def test_normformer_headscale_post_attention_norm_and_ffn_mid_norm() -> None:
    model = noisy(tiny("normformer"))
    ids = tokens(model.cfg)
    ctx = model.context(ids, True, None)
    x = model.embed(ids)
    for L in model.decoder.layers:
        a = L.attn
        q, k, v = a.project(L.norm_attn(x), ctx)
        heads = a.attend(q, k, v, ctx) * a.head_scale[:, None, None]  # HeadScale
        mha = a.o_proj(heads.transpose(1, 2).flatten(2))
        x = x + L.post_norm_attn(mha)
        m = L.mlp
        x = x + m.down(m.norm_mid(m.act(m.up(L.norm_mlp(x)))))  # W2 N(act(W1 N(x)))
    torch.testing.assert_close(model.hidden(ids), model.decoder.final_norm(x), rtol=0, atol=0)


@pytest.mark.parametrize("star", [False, True])
def test_hybrid_norm_qkv_norm_attention_and_post_norm_ffn(star: bool) -> None:
    model = noisy(tiny("hybrid_norm", topology_params={"star": star}))
    ids = tokens(model.cfg)
    x = model.embed(ids)
    for L in model.decoder.layers:
        a = L.attn
        h = L.norm_attn(x) if (star and L.index == 0) else x
        q = a.heads(a.q_norm(a.q_proj(h)))
        k = a.heads(a.k_norm(a.k_proj(h)))
        v = a.heads(a.v_norm(a.v_proj(h)))
        mask = torch.ones(h.shape[1], h.shape[1], dtype=torch.bool).tril()
        probs = torch.softmax((q @ k.transpose(-1, -2) * a.scale).masked_fill(~mask, -1e30), -1)
        x = x + a.o_proj((probs @ v).transpose(1, 2).flatten(2))  # x' = x + Attn(x)
        x = L.norm_mlp(x + L.mlp(x))  # N(x' + FFN(x'))
    assert not hasattr(model.decoder.layers[1], "norm_attn")
    torch.testing.assert_close(model.hidden(ids), x, rtol=1e-5, atol=1e-6)


def test_encoder_decoder_rule_covers_cross_attention() -> None:
    """The decoder of an encoder-decoder applies the rule to attn, cross and mlp in order, and
    cross-attention reads the encoder's (final-normed) output."""
    model = noisy(tiny("pre_ln", kind="encoder_decoder"))
    src, tgt = tokens(model.cfg, seq=7, seed=2), tokens(model.cfg, seq=5, seed=3)
    enc_ctx = model.context(src, False, None)
    x = model.embed(src)
    for L in model.encoder.layers:
        x = x + L.attn(L.norm_attn(x), enc_ctx)
        x = x + L.mlp(L.norm_mlp(x))
    memory = model.encoder.final_norm(x)
    ctx = model.context(tgt, True, None)
    ctx.memory = memory
    y = model.embed(tgt)
    for L in model.decoder.layers:
        y = y + L.attn(L.norm_attn(y), ctx)
        y = y + L.cross(L.norm_cross(y), ctx)
        y = y + L.mlp(L.norm_mlp(y))
    expected = model.decoder.final_norm(y)
    torch.testing.assert_close(model.hidden(src, decoder_input_ids=tgt), expected, rtol=0, atol=0)


# Topologies whose equation is checked by a dedicated test rather than a RULES entry:
# name -> (file in tests/nn, test function).
HERE = "test_equations.py"
STREAMS_BY_HAND = ("test_streams.py", "test_output_equals_equation_by_hand_with_randomized_weights")
DEDICATED: dict[str, tuple[str, str]] = {
    "peri_ln": (HERE, "test_peri_ln_normalizes_embeddings_then_sandwiches"),
    "mix_ln": (HERE, "test_mix_ln_first_floor_aL_layers_post_ln_rest_pre_ln"),
    "b2t": (HERE, "test_b2t_adds_layer_input_before_last_norm"),
    "normformer": (HERE, "test_normformer_headscale_post_attention_norm_and_ffn_mid_norm"),
    "hybrid_norm": (HERE, "test_hybrid_norm_qkv_norm_attention_and_post_norm_ffn"),
    "hyper_connections": STREAMS_BY_HAND,
    "resi_dual": STREAMS_BY_HAND,
    "value_residual": STREAMS_BY_HAND,
    "denseformer": STREAMS_BY_HAND,
    "ngpt": (
        "test_ngpt.py",
        "test_sublayer_update_is_norm_of_step_toward_normalized_branch",
    ),
}


def test_every_registered_topology_has_an_equation_test() -> None:
    """A new topology without a RULES entry or a dedicated equation test fails here."""
    registered = set(TOPOLOGIES.names())
    assert not set(RULES) & set(DEDICATED), "a topology is listed twice"
    missing = registered - set(RULES) - set(DEDICATED)
    assert not missing, f"no equation test for {sorted(missing)}: add a RULES entry or a test"
    stale = (set(RULES) | set(DEDICATED)) - registered
    assert not stale, f"equation tests for unregistered topologies {sorted(stale)}"


@pytest.mark.parametrize("name", sorted(DEDICATED))
def test_a_dedicated_equation_test_exists_and_builds_its_topology(name: str) -> None:
    """The reference is not stale: the test function exists and its file names the topology."""
    file, function = DEDICATED[name]
    source = (Path(__file__).parent / file).read_text()
    tests = {node.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.FunctionDef)}
    assert function in tests, f"{file} has no {function}"
    assert f'"{name}"' in source, f"{file} never builds {name!r}"
