"""nGPT (Loshchilov et al. 2024): unit-norm stream, its update rule, spherical attention and MLP
scales, logit scale, weight renormalization, causality, and that a tiny model learns."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnorm.errors import ConfigError
from resnorm.nn.config import ModelConfig
from resnorm.nn.model import Transformer, build_model
from resnorm.nn.positional import apply_rope
from resnorm.nn.topologies.ngpt import NGPTParams, normalize_ngpt_weights_

V, D, H, T, B = 32, 16, 2, 8, 3
KINDS = ("decoder", "encoder", "encoder_decoder")


def tiny(**overrides: Any) -> ModelConfig:
    base: dict[str, Any] = dict(
        topology="ngpt",
        vocab_size=V,
        d_model=D,
        n_heads=H,
        n_layers=2,
        d_ff=32,
        max_seq_len=16,
        tie_embeddings=False,
    )
    base.update(overrides)
    return ModelConfig(**base)


def unit(x: Tensor, dim: int = -1) -> Tensor:
    """Hand-written L2 normalization (independent of the library's)."""
    return x / torch.sqrt((x * x).sum(dim=dim, keepdim=True))


def run(model: Transformer, ids: Tensor, mask: Tensor | None = None) -> Tensor:
    if model.cfg.kind == "encoder_decoder":
        return model(ids, attention_mask=mask, decoder_input_ids=ids)  # type: ignore[no-any-return]
    return model(ids, attention_mask=mask)  # type: ignore[no-any-return]


def ids_for(seed: int = 0) -> Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


# The embedding dimension of each matrix, written out here rather than taken from the module.
READS = ("q_proj", "k_proj", "v_proj", "up", "gate")  # weight (out, d_model): unit rows
WRITES = ("o_proj", "down")  # weight (d_model, in): unit columns


def embedding_norms(model: Transformer) -> dict[str, Tensor]:
    """Norm of every d_model-sized vector of every matrix, by parameter name."""
    norms = {}
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if isinstance(module, nn.Linear):
            assert leaf in READS + WRITES + ("lm_head",), f"unexpected matrix {name}"
            norms[name] = module.weight.norm(dim=0 if leaf in WRITES else 1)
        elif isinstance(module, nn.Embedding):
            norms[name] = module.weight.norm(dim=1)
    return norms


def assert_unit_along_embedding(model: Transformer) -> None:
    for name, norms in embedding_norms(model).items():
        torch.testing.assert_close(norms, torch.ones_like(norms), msg=name)


# --- the stream ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
def test_stream_has_unit_norm_after_every_sublayer(kind: str, mlp: str) -> None:
    model = build_model(tiny(kind=kind, mlp=mlp, positional="rope"))
    seen: list[Tensor] = []
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1].startswith("tap_"):
            module.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    run(model, ids_for())
    n_sublayers = {"decoder": 2 * 2, "encoder": 2 * 2, "encoder_decoder": 2 * 2 + 3 * 2}[kind]
    assert len(seen) == n_sublayers
    for h in seen:
        torch.testing.assert_close(h.norm(dim=-1), torch.ones(B, T))


def test_sublayer_update_is_norm_of_step_toward_normalized_branch() -> None:
    """h <- Norm(h + a (Norm(F(h)) - h)) by hand on a 1-layer model, with random a."""
    torch.manual_seed(0)
    model = build_model(tiny(n_layers=1, mlp="swiglu"))
    layer, topology = model.decoder.layers[0], model.decoder.topology
    a = {s: torch.rand(D) for s in ("attn", "mlp")}
    with torch.no_grad():  # stored = a * alpha_scale / alpha_init (the reparametrization)
        for s, value in a.items():
            getattr(layer, f"alpha_{s}").copy_(value * D**-0.5 / 0.05)
    taps: dict[str, Tensor] = {}
    for s in ("attn", "mlp"):
        layer.tap(s).register_forward_hook(lambda m, i, o, s=s: taps.__setitem__(s, o))
    ids = ids_for()
    out = model.hidden(ids)

    ctx = model.context(ids, True, None)
    h0 = unit(model.embed(ids))
    h1 = unit(h0 + a["attn"] * (unit(layer.attn(h0, ctx)) - h0))
    h2 = unit(h1 + a["mlp"] * (unit(layer.mlp(h1)) - h1))
    torch.testing.assert_close(taps["attn"], h1)
    torch.testing.assert_close(taps["mlp"], h2)
    torch.testing.assert_close(out, h2)  # no final norm
    torch.testing.assert_close(topology.alpha(layer, "attn"), a["attn"])


def test_cross_attention_sublayer_follows_the_same_rule() -> None:
    torch.manual_seed(0)
    model = build_model(tiny(kind="encoder_decoder", n_layers=1))
    layer = model.decoder.layers[0]
    with torch.no_grad():
        layer.alpha_cross.uniform_(0.0, 4 * D**-0.5 / 0.05)
    streams: dict[str, Tensor] = {}
    model.encoder.register_forward_hook(lambda m, i, o: streams.__setitem__("memory", o))
    for s in ("attn", "cross"):
        layer.tap(s).register_forward_hook(lambda m, i, o, s=s: streams.__setitem__(s, o))
    ids = ids_for()
    model(ids, decoder_input_ids=ids)

    ctx = model.context(ids, True, None)
    ctx.memory = streams["memory"]
    h = streams["attn"]
    a = layer.alpha_cross * (0.05 / D**-0.5)
    expected = unit(h + a * (unit(layer.cross(h, ctx)) - h))
    torch.testing.assert_close(streams["cross"], expected)


# --- attention ----------------------------------------------------------------------------------
@pytest.mark.parametrize("positional", ["rope", "learned"])
@pytest.mark.parametrize("n_kv_heads", [2, 1])
def test_attention_logits_are_sqrt_dk_times_s_qk_weighted_cosines(
    positional: str, n_kv_heads: int
) -> None:
    """logit_ij = sqrt(d_k) sum_c s_c^2 q_ic k_jc / (|q_i| |k_j|), q and k after RoPE."""
    torch.manual_seed(0)
    model = build_model(tiny(positional=positional, n_kv_heads=n_kv_heads))
    attn = model.decoder.layers[0].attn
    with torch.no_grad():
        attn.s_qk.uniform_(0.5 * D**-0.5, 2 * D**-0.5)
    probs: list[Tensor] = []
    attn.probs.register_forward_hook(lambda m, i, o: probs.append(o))
    ids = ids_for()
    model(ids)

    dh, groups = D // H, H // n_kv_heads
    x = unit(model.embed(ids))  # the stream entering layer 0
    q = attn.q_proj(x).view(B, T, H, dh).transpose(1, 2)  # (B, H, T, Dh)
    k = attn.k_proj(x).view(B, T, n_kv_heads, dh).transpose(1, 2)
    if positional == "rope":
        cos, sin = model.embed.rotary(T)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    k = k.repeat_interleave(groups, dim=1)
    s = (attn.s_qk * D**0.5).repeat_interleave(groups, dim=0)  # effective s_qk, init 1
    logits = math.sqrt(dh) * torch.einsum("bhtc,bhsc,hc->bhts", unit(q), unit(k), s**2)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    expected = torch.softmax(logits.masked_fill(~causal, -math.inf), dim=-1)
    torch.testing.assert_close(probs[0], expected)


def test_fused_attention_matches_eager() -> None:
    torch.manual_seed(0)
    model = build_model(tiny(positional="rope", n_kv_heads=1))
    ids = ids_for()
    fused = model(ids)
    for layer in model.decoder.layers:  # a hook on probs switches to the eager path
        layer.attn.probs.register_forward_hook(lambda m, i, o: None)
    torch.testing.assert_close(model(ids), fused)


# --- MLP and logits -----------------------------------------------------------------------------
@pytest.mark.parametrize("mlp", ["swiglu", "geglu", "gelu", "relu"])
def test_mlp_scales_gate_input_by_s_v_sqrt_d_and_up_by_s_u(mlp: str) -> None:
    torch.manual_seed(0)
    mod = build_model(tiny(mlp=mlp)).decoder.layers[0].mlp
    with torch.no_grad():
        mod.s_v.uniform_(0.5, 2.0)
        if mod.s_u is not None:
            mod.s_u.uniform_(0.5, 2.0)
    x = unit(torch.randn(B, T, D))
    act = {"swiglu": F.silu, "geglu": lambda z: F.gelu(z, approximate="tanh"), "gelu": F.gelu}
    act["relu"] = F.relu
    nu = (x @ (mod.gate if mod.gate is not None else mod.up).weight.T) * mod.s_v * math.sqrt(D)
    hidden = act[mlp](nu)
    if mlp in ("swiglu", "geglu"):
        hidden = hidden * (x @ mod.up.weight.T) * mod.s_u
    else:
        assert mod.s_u is None
    torch.testing.assert_close(mod(x), hidden @ mod.down.weight.T)


def test_logits_are_head_output_times_s_z() -> None:
    torch.manual_seed(0)
    model = build_model(tiny())
    with torch.no_grad():
        model.decoder.s_z.uniform_(0.5 * D**-0.5, 2 * D**-0.5)
    ids = ids_for()
    s_z = model.decoder.s_z * D**0.5  # effective: stored * (sz_init / sz_scale)
    torch.testing.assert_close(model(ids), model.lm_head(model.hidden(ids)) * s_z)
    assert not hasattr(build_model(tiny(kind="encoder_decoder")).encoder, "s_z")


def test_scales_start_at_their_init_values_with_stored_values_at_scale() -> None:
    model = build_model(tiny(kind="encoder_decoder", mlp="swiglu"))
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if leaf.startswith("alpha_") or leaf in ("s_qk", "s_z"):
            torch.testing.assert_close(p, torch.full_like(p, D**-0.5), msg=name)
        elif leaf in ("s_u", "s_v"):
            torch.testing.assert_close(p, torch.ones_like(p), msg=name)
    topology, layer = model.decoder.topology, model.decoder.layers[0]
    torch.testing.assert_close(topology.alpha(layer, "cross"), torch.full((D,), 0.05))


# --- weights ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tie", [False, True])
def test_init_leaves_every_matrix_unit_norm_along_d_model(kind: str, tie: bool) -> None:
    model = build_model(tiny(kind=kind, mlp="swiglu", tie_embeddings=tie))
    assert_unit_along_embedding(model)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tie", [False, True])
def test_after_step_renormalizes_every_matrix_along_d_model(kind: str, tie: bool) -> None:
    torch.manual_seed(0)
    model = build_model(tiny(kind=kind, mlp="swiglu", tie_embeddings=tie))
    opt = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.0)
    ids = ids_for()
    run(model, ids, torch.ones_like(ids)).logsumexp(-1).mean().backward()
    opt.step()
    drift = max((n - 1).abs().max().item() for n in embedding_norms(model).values())
    assert drift > 1e-3, "the step should have moved some vector off the sphere"
    model.after_step()
    assert_unit_along_embedding(model)


def test_normalize_weights_of_a_stack_leaves_the_shared_tables_alone() -> None:
    model = build_model(tiny())
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    normalize_ngpt_weights_(model.decoder)
    norms = embedding_norms(model)
    torch.testing.assert_close(norms["embed.tok"], torch.full((V,), 2.0))
    torch.testing.assert_close(norms["decoder.layers.1.mlp.down"], torch.ones(32))
    normalize_ngpt_weights_(model)
    assert_unit_along_embedding(model)


def test_no_layernorm_or_rmsnorm_anywhere() -> None:
    for kind in KINDS:
        model = build_model(tiny(kind=kind, norm="rmsnorm"))
        assert not [m for m in model.modules() if isinstance(m, (nn.LayerNorm, nn.RMSNorm))]
        assert all(s.final_norm is None and s.embed_norm is None for s in model.stacks())


# --- training -----------------------------------------------------------------------------------
@pytest.mark.parametrize("positional", ["learned", "rope"])
def test_decoder_is_causal_by_gradient(positional: str) -> None:
    torch.manual_seed(0)
    model = build_model(tiny(positional=positional))
    emb: list[Tensor] = []

    def keep(module: nn.Module, inputs: Any, out: Tensor) -> None:
        out.retain_grad()
        emb.append(out)

    model.embed.register_forward_hook(keep)
    t = 4
    model(ids_for())[:, t].sum().backward()
    grad = emb[0].grad
    assert grad is not None
    assert grad[:, t + 1 :].abs().max() == 0
    assert grad[:, : t + 1].abs().sum(-1).min() > 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mlp", ["gelu", "swiglu"])
def test_every_kind_trains_with_finite_values_and_uses_every_parameter(kind: str, mlp: str) -> None:
    torch.manual_seed(0)
    model = build_model(tiny(kind=kind, mlp=mlp, positional="rope", n_kv_heads=1))
    ids = ids_for()
    mask = torch.ones_like(ids)
    mask[0, -2:] = 0  # padding
    logits = run(model, ids, mask)
    loss = F.cross_entropy(logits.flatten(0, 1), ids.flatten())
    loss.backward()
    assert torch.isfinite(logits).all() and torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} is unused"
        assert torch.isfinite(p.grad).all(), name


def test_loss_drops_on_a_repeated_pattern_with_after_step() -> None:
    torch.manual_seed(0)
    model = build_model(tiny(positional="rope", mlp="swiglu"))
    pattern = torch.tensor([3, 17, 8, 25, 11, 2])
    seq = pattern.repeat(3)[None].repeat(B, 1)  # (B, 18)
    x, y = seq[:, :15], seq[:, 1:16]
    opt = torch.optim.AdamW(model.parameters(), lr=0.02, weight_decay=0.0)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.after_step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    assert_unit_along_embedding(model)


# --- config -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params",
    [{"alpha_init": 0.0}, {"alpha_scale": -1.0}, {"sqk_init": 0}, {"sz_scale": -0.1}, {"nope": 1}],
)
def test_bad_params_raise_config_error_naming_the_field(params: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=next(iter(params))):
        tiny(topology_params=params)


@pytest.mark.parametrize(
    "field, value", [("qk_norm", "head"), ("attn_scale", 0.5), ("embed_norm", True)]
)
def test_conflicting_model_options_are_rejected(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=field):
        tiny(**{field: value})


def test_params_are_typed_with_paper_defaults() -> None:
    p = NGPTParams()
    assert (p.alpha_init, p.sqk_init, p.suv_init, p.sz_init, p.suv_scale) == (0.05, 1, 1, 1, 1)
    cfg = tiny(topology_params={"alpha_init": 0.1, "sqk_scale": 1})
    layer = build_model(cfg).decoder.layers[0]
    torch.testing.assert_close(layer.attn.s_qk, torch.ones(H, D // H))  # stored at sqk_scale
