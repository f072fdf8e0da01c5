"""Stream-family topologies (resi_dual, hyper_connections, value_residual, denseformer): each
model's output equals its paper's equation computed by hand from the model's own submodules,
with the topology's own weights randomized so that miswiring shows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.testing import assert_close

from resnorm.errors import ConfigError
from resnorm.nn.attention import Attention
from resnorm.nn.config import ModelConfig
from resnorm.nn.context import Context
from resnorm.nn.model import Layer, Stack, Transformer, build_model
from resnorm.nn.topologies import TOPOLOGIES
from resnorm.nn.topologies.streams import ValueResidualAttention

KINDS = ("decoder", "encoder", "encoder_decoder")
STREAMS = ("resi_dual", "hyper_connections", "value_residual", "denseformer")
StackByHand = Callable[[Stack, Tensor, Context], Tensor]


def make(
    topology: str, kind: str = "decoder", n_layers: int = 2, seed: int = 0, **kw: Any
) -> Transformer:
    torch.manual_seed(seed)
    fields = dict(vocab_size=32, d_model=16, n_heads=2, max_seq_len=16) | kw
    cfg = ModelConfig(kind=kind, n_layers=n_layers, topology=topology, **fields)
    return build_model(cfg).eval()


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 1, std: float = 0.1, extra: float = 0.3) -> None:
    """Perturb every parameter (norm gains and biases too); topology weights by ``extra``."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        scale = extra if any(k in name for k in ("hc_", "dwa_", "value_lambda")) else std
        p.add_(torch.randn(p.shape, generator=g) * scale)


def inputs(seed: int = 2) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 32, (2, 6), generator=g), torch.randint(0, 32, (2, 5), generator=g)


def hidden(model: Transformer) -> Tensor:
    ids, dec = inputs()
    if model.cfg.kind == "encoder_decoder":
        return model.hidden(ids, decoder_input_ids=dec)
    return model.hidden(ids)


def hidden_by_hand(model: Transformer, stack_by_hand: StackByHand) -> Tensor:
    """Embeddings -> stack(s) by hand, with the model's own masks and embeddings."""
    ids, dec = inputs()
    if model.cfg.kind == "decoder":
        return stack_by_hand(model.decoder, model.embed(ids), model.context(ids, True, None))
    memory = stack_by_hand(model.encoder, model.embed(ids), model.context(ids, False, None))
    if model.cfg.kind == "encoder":
        return memory
    ctx = model.context(dec, True, None)
    ctx.memory = memory
    return stack_by_hand(model.decoder, model.embed(dec), ctx)


def run(layer: Layer, s: str, h: Tensor, ctx: Context) -> Tensor:
    """Sublayer ``s`` of ``layer`` (no dropout in these tests)."""
    return layer.mlp(h) if s == "mlp" else getattr(layer, s)(h, ctx)


def norm(layer: Layer, s: str) -> nn.Module:
    return getattr(layer, f"norm_{s}")


# --- the equations, by hand --------------------------------------------------------------------
def resi_dual_by_hand(stack: Stack, x: Tensor, ctx: Context) -> Tensor:
    dual = x
    for layer in stack.layers:
        for s in layer.sublayers:
            out = run(layer, s, x, ctx)
            x, dual = norm(layer, s)(x + out), dual + out
    return x + stack.norm_dual(dual)


def hyper_by_hand(n: int, dynamic: bool) -> StackByHand:
    """In the reference pseudocode's (B, T, n, d) layout, with matmuls (the module uses einsum)."""

    def by_hand(stack: Stack, x: Tensor, ctx: Context) -> Tensor:
        H = torch.stack([x] * n, dim=-2)  # (B, T, n, d)
        for layer in stack.layers:
            for s in layer.sublayers:
                p = {k: v for k, v in layer.named_parameters() if k.startswith(f"hc_{s}_")}
                alpha, beta = p[f"hc_{s}_static_alpha"], p[f"hc_{s}_static_beta"]
                if dynamic:
                    Hn = getattr(layer, f"hc_{s}_norm")(H)
                    w_a, w_b = p[f"hc_{s}_dynamic_alpha_fn"], p[f"hc_{s}_dynamic_beta_fn"]
                    alpha = alpha + p[f"hc_{s}_dynamic_alpha_scale"] * torch.tanh(Hn @ w_a)
                    beta = beta + p[f"hc_{s}_dynamic_beta_scale"] * torch.tanh(Hn @ w_b)
                mix = alpha.transpose(-1, -2) @ H  # (B, T, n+1, d): [A_m^T H; A_r^T H]
                y = run(layer, s, norm(layer, s)(mix[..., 0, :]), ctx)
                H = beta[..., None] * y[..., None, :] + mix[..., 1:, :]
        return stack.final_norm(H.sum(-2))

    return by_hand


def value_residual_by_hand(lam: float | None) -> StackByHand:
    """``lam`` None: each layer's learned ``attn.value_lambda``."""

    def by_hand(stack: Stack, x: Tensor, ctx: Context) -> Tensor:
        v1 = None
        for layer in stack.layers:
            attn = layer.attn
            q, k, v = Attention.project(attn, norm(layer, "attn")(x), ctx)
            if v1 is None:
                v1 = v
            else:
                w = attn.value_lambda if lam is None else lam
                v = w * v + (1 - w) * v1
            x = x + attn.out(attn.attend(q, k, v, ctx))
            for s in layer.sublayers[1:]:
                x = x + run(layer, s, norm(layer, s)(x), ctx)
        return stack.final_norm(x)

    return by_hand


def denseformer_by_hand(stack: Stack, x: Tensor, ctx: Context) -> Tensor:
    outputs = [x]
    for layer in stack.layers:
        h = x
        for s in layer.sublayers:
            h = h + run(layer, s, norm(layer, s)(h), ctx)
        outputs.append(h)
        x = sum(a * out for a, out in zip(layer.dwa_weights, outputs, strict=True))
    return stack.final_norm(x)


def case(
    name: str,
    topology: str,
    params: dict[str, Any],
    by_hand: StackByHand,
    n_layers: int = 2,
    **kw: Any,
) -> Any:
    return pytest.param(topology, params, by_hand, n_layers, kw, id=name)


CASES = [
    case("resi_dual", "resi_dual", {}, resi_dual_by_hand),
    case("hyper_static_n3", "hyper_connections", {"expansion": 3}, hyper_by_hand(3, False)),
    case(
        "hyper_dynamic_n2",
        "hyper_connections",
        {"expansion": 2, "dynamic": True},
        hyper_by_hand(2, True),
    ),
    case(
        "value_residual_lam0.3_gqa_rope",
        "value_residual",
        {"lam": 0.3},
        value_residual_by_hand(0.3),
        3,
        n_heads=4,
        n_kv_heads=2,
        positional="rope",
    ),
    case(
        "value_residual_learnable",
        "value_residual",
        {"lam": 0.3, "learnable": True},
        value_residual_by_hand(None),
        3,
    ),
    case("denseformer", "denseformer", {}, denseformer_by_hand, 3),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("topology", "params", "by_hand", "n_layers", "kw"), CASES)
def test_output_equals_equation_by_hand_with_randomized_weights(
    topology: str, params: dict[str, Any], by_hand: StackByHand, n_layers: int, kw: Any, kind: str
) -> None:
    model = make(topology, kind, n_layers, topology_params=params, **kw)
    randomize_(model)
    with torch.no_grad():
        assert_close(hidden(model), hidden_by_hand(model, by_hand))


@torch.no_grad()
def test_resi_dual_equals_formula_unrolled_on_two_layer_stack() -> None:
    model = make("resi_dual", n_layers=2)
    randomize_(model)
    ids, _ = inputs()
    ctx, x0 = model.context(ids, True, None), model.embed(ids)
    l0, l1 = model.decoder.layers
    a0 = l0.attn(x0, ctx)
    x1 = l0.norm_attn(x0 + a0)
    m0 = l0.mlp(x1)
    x2 = l0.norm_mlp(x1 + m0)
    a1 = l1.attn(x2, ctx)
    x3 = l1.norm_attn(x2 + a1)
    m1 = l1.mlp(x3)
    x4 = l1.norm_mlp(x3 + m1)
    expected = x4 + model.decoder.norm_dual(x0 + a0 + m0 + a1 + m1)
    assert model.decoder.final_norm is None
    assert_close(model.hidden(ids), expected)


# --- identities ---------------------------------------------------------------------------------
def same_weights_as_pre_ln(
    topology: str, kind: str, params: dict[str, Any], **kw: Any
) -> tuple[Tensor, Tensor]:
    """Hidden states of a randomized pre_ln model and of ``topology`` with its weights copied."""
    pre = make("pre_ln", kind, **kw)
    randomize_(pre)
    other = make(topology, kind, topology_params=params, **kw)
    missing, unexpected = other.load_state_dict(pre.state_dict(), strict=False)
    assert not unexpected, unexpected
    assert all(k.split(".")[3].startswith(("hc_", "dwa_")) for k in missing), missing
    with torch.no_grad():
        return hidden(pre), hidden(other)


@pytest.mark.parametrize("kind", KINDS)
def test_hyper_connections_n1_static_equals_pre_ln(kind: str) -> None:
    expected, got = same_weights_as_pre_ln("hyper_connections", kind, {"expansion": 1})
    assert_close(got, expected)


@pytest.mark.parametrize("kind", KINDS)
def test_hyper_connections_at_init_equals_pre_ln_for_any_n(kind: str) -> None:
    # Every stream holds the pre_ln stream at init (A_r = I, B = 1), so the sum is n times it
    # and the final LayerNorm removes the factor n but for its eps (made negligible here).
    params = {"expansion": 4, "dynamic": True}
    expected, got = same_weights_as_pre_ln("hyper_connections", kind, params, norm_eps=1e-12)
    assert_close(got, expected)


@pytest.mark.parametrize("kind", KINDS)
def test_value_residual_lam1_equals_pre_ln(kind: str) -> None:
    expected, got = same_weights_as_pre_ln("value_residual", kind, {"lam": 1.0})
    assert_close(got, expected)


@pytest.mark.parametrize("kind", KINDS)
def test_denseformer_at_init_equals_pre_ln(kind: str) -> None:
    expected, got = same_weights_as_pre_ln("denseformer", kind, {})
    assert_close(got, expected)


def test_hyper_connections_init_is_eq14_indexed_by_sublayer() -> None:
    model = make("hyper_connections", "encoder_decoder", topology_params={"expansion": 4})
    for layer in model.decoder.layers:  # attn, cross, mlp: sublayer k = 3 l + position
        for position, s in enumerate(("attn", "cross", "mlp")):
            k = 3 * layer.index + position
            alpha = getattr(layer, f"hc_{s}_static_alpha")
            assert_close(alpha[:, 0], torch.eye(4)[k % 4])  # A_m = e_(k mod n)
            assert_close(alpha[:, 1:], torch.eye(4))  # A_r = I
            assert_close(getattr(layer, f"hc_{s}_static_beta"), torch.ones(4))  # B = 1


def test_hyper_connections_dynamic_init_is_zero_fn_and_small_scale() -> None:
    model = make("hyper_connections", topology_params={"expansion": 2, "dynamic": True})
    layer = model.decoder.layers[1]
    assert_close(layer.hc_mlp_dynamic_alpha_fn, torch.zeros(16, 3))
    assert_close(layer.hc_mlp_dynamic_beta_fn, torch.zeros(16))
    assert_close(layer.hc_mlp_dynamic_alpha_scale, torch.tensor([0.01]))
    assert_close(layer.hc_mlp_dynamic_beta_scale, torch.tensor([0.01]))


def test_hyper_connections_taps_see_all_streams() -> None:
    model = make("hyper_connections", topology_params={"expansion": 3})
    seen = []
    model.decoder.layers[0].tap_attn.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    hidden(model)
    assert seen == [torch.Size([3, 2, 6, 16])]


def test_denseformer_weights_are_per_layer_and_start_at_identity() -> None:
    model = make("denseformer", n_layers=3)
    for layer in model.decoder.layers:
        expected = torch.zeros(layer.index + 2)
        expected[-1] = 1.0
        assert_close(layer.dwa_weights.detach(), expected)


def test_value_residual_leaves_cross_attention_alone() -> None:
    model = make("value_residual", "encoder_decoder", topology_params={"learnable": True})
    for layer in model.decoder.layers:
        assert type(layer.cross) is Attention
        assert isinstance(layer.attn, ValueResidualAttention)
    names = {k for k, _ in model.named_parameters() if k.endswith("value_lambda")}
    assert names == {"encoder.layers.1.attn.value_lambda", "decoder.layers.1.attn.value_lambda"}


# --- causality, every kind, bad params ----------------------------------------------------------
VARIANTS = {
    "resi_dual": ("resi_dual", {}),
    "hyper_static": ("hyper_connections", {"expansion": 3}),
    "hyper_dynamic": ("hyper_connections", {"expansion": 3, "dynamic": True}),
    "value_residual": ("value_residual", {"lam": 0.3, "learnable": True}),
    "denseformer": ("denseformer", {}),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_decoder_is_causal_by_gradient(variant: str) -> None:
    topology, params = VARIANTS[variant]
    model = make(topology, n_layers=3, topology_params=params)
    randomize_(model)
    ids, _ = inputs()
    emb = model.embed(ids).detach().requires_grad_()
    model.embed.register_forward_hook(lambda m, i, o: emb)  # feed these embeddings
    logits = model(ids)
    for t in range(ids.shape[1]):
        (grad,) = torch.autograd.grad(logits[:, t].sum(), emb, retain_graph=True)
        assert torch.count_nonzero(grad[:, t + 1 :]) == 0, f"logits at {t} see the future"
        assert torch.count_nonzero(grad[:, t]) > 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_kind_runs_forward_and_backward_finite(variant: str, kind: str) -> None:
    topology, params = VARIANTS[variant]
    model = make(topology, kind, topology_params=params).train()
    ids, dec = inputs()
    logits = model(ids, decoder_input_ids=dec) if kind == "encoder_decoder" else model(ids)
    assert logits.shape == (*(dec if kind == "encoder_decoder" else ids).shape, 32)
    assert torch.isfinite(logits).all()
    logits.log_softmax(-1).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} gets no gradient"
        assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("topology", STREAMS)
def test_registered_in_stream_family(topology: str) -> None:
    assert TOPOLOGIES.get(topology, "model.topology").family == "stream"


BAD_PARAMS = [
    ("hyper_connections", {"expansion": 0}, "expansion"),
    ("hyper_connections", {"expansion": 2.5}, "expansion"),
    ("hyper_connections", {"expansion": True}, "expansion"),
    ("hyper_connections", {"dynamic": "yes"}, "dynamic"),
    ("hyper_connections", {"rate": 4}, "rate"),
    ("value_residual", {"lam": 1.5}, "lam"),
    ("value_residual", {"lam": -0.1}, "lam"),
    ("value_residual", {"learnable": 1}, "learnable"),
    ("value_residual", {"lambda": 0.5}, "lambda"),
    ("denseformer", {"dilation": 2}, "dilation"),
    ("resi_dual", {"scale": 1.0}, "scale"),
]


@pytest.mark.parametrize(("topology", "params", "key"), BAD_PARAMS)
def test_bad_params_raise_config_error_naming_the_key(
    topology: str, params: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as err:
        ModelConfig(topology=topology, topology_params=params)
    assert err.value.field == f"model.topology_params.{key}"
    assert f"model.topology_params.{key}" in str(err.value)
