"""The identities between topologies listed in topologies.md, and causality by gradient."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modeltools import copy_weights, noisy, run, tiny, tokens
from resnorm import TOPOLOGIES, ModelConfig, build_model

KINDS = ("decoder", "encoder", "encoder_decoder")


def same(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_deepnorm_with_alpha_beta_one_equals_post_ln(kind: str) -> None:
    deep = noisy(tiny("deepnorm", kind=kind, topology_params={"alpha": 1.0, "beta": 1.0}))
    post = build_model(tiny("post_ln", kind=kind)).eval()
    copy_weights(deep, post)
    ids = tokens(deep.cfg)
    same(run(deep, ids), run(post, ids))


@pytest.mark.parametrize("kind", KINDS)
def test_admin_with_omega_one_equals_post_ln(kind: str) -> None:
    post = noisy(tiny("post_ln", kind=kind))
    admin = build_model(tiny("admin", kind=kind, topology_params={"omega": 1.0})).eval()
    copy_weights(post, admin)
    ids = tokens(post.cfg)
    same(run(admin, ids), run(post, ids))


@pytest.mark.parametrize("kind", KINDS)
def test_rezero_at_init_is_the_identity_map(kind: str) -> None:
    model = build_model(tiny("rezero", kind=kind)).eval()
    ids = tokens(model.cfg)
    same(run(model, ids), model.embed(ids))


@pytest.mark.parametrize("kind", KINDS)
def test_layerscale_zero_is_the_identity_map_of_the_stream(kind: str) -> None:
    model = build_model(tiny("layerscale", kind=kind, topology_params={"init": 0.0})).eval()
    ids = tokens(model.cfg)
    same(run(model, ids), model.output_stack.final_norm(model.embed(ids)))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("a, twin", [(0.0, "pre_ln"), (1.0, "post_ln")])
def test_mix_ln_endpoints_equal_pre_ln_and_post_ln(kind: str, a: float, twin: str) -> None:
    mix = noisy(tiny("mix_ln", kind=kind, topology_params={"post_fraction": a}))
    other = build_model(tiny(twin, kind=kind)).eval()
    assert set(mix.state_dict()) == set(other.state_dict())
    copy_weights(mix, other)
    ids = tokens(mix.cfg)
    same(run(mix, ids), run(other, ids))


def test_lns_at_layer_one_equals_pre_ln() -> None:
    lns = noisy(tiny("lns", n_layers=1))
    pre = build_model(tiny("pre_ln", n_layers=1)).eval()
    copy_weights(lns, pre)
    ids = tokens(lns.cfg)
    same(run(lns, ids), run(pre, ids))


def test_lns_differs_from_pre_ln_from_layer_two() -> None:
    lns = noisy(tiny("lns", n_layers=2))
    pre = build_model(tiny("pre_ln", n_layers=2)).eval()
    copy_weights(lns, pre)
    ids = tokens(lns.cfg)
    assert not torch.allclose(run(lns, ids), run(pre, ids))


@pytest.mark.parametrize("kind", KINDS)
def test_sandwich_ln_with_identity_output_norm_equals_pre_ln(kind: str) -> None:
    sandwich = noisy(tiny("sandwich_ln", kind=kind))
    for stack in sandwich.stacks():
        for layer in stack.layers:
            for s in layer.sublayers:
                setattr(layer, f"post_norm_{s}", nn.Identity())
    pre = build_model(tiny("pre_ln", kind=kind)).eval()
    copy_weights(sandwich, pre)
    ids = tokens(pre.cfg)
    same(run(sandwich, ids), run(pre, ids))


def causal_cases() -> list[tuple[str, str]]:
    return [(t, k) for t in TOPOLOGIES.names() for k in ("decoder", "encoder_decoder")]


@pytest.mark.parametrize("topology, kind", causal_cases())
def test_causality_by_gradient(topology: str, kind: str) -> None:
    """d logits_t / d x_{>t} = 0 for every causal stack (inputs: the decoder's embeddings)."""
    model = noisy(tiny(topology, kind=kind, positional="rope"), scale=0.05)
    ids = tokens(model.cfg, seq=8)
    seen: list[torch.Tensor] = []

    def grab(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        out = out.detach().requires_grad_(True)
        seen.append(out)
        return out

    model.embed.register_forward_hook(grab)
    dec = ids if kind == "encoder_decoder" else None
    logits = model(ids, decoder_input_ids=dec)
    x = seen[-1]  # the decoder's input embeddings (the encoder's come first)
    for t in range(ids.shape[1] - 1):
        (grad,) = torch.autograd.grad(logits[:, t].sum(), x, retain_graph=True)
        assert grad[:, t + 1 :].abs().max() == 0, f"position {t} sees the future"
        assert grad[:, : t + 1].abs().max() > 0, f"position {t} sees nothing of its past"


def test_encoder_is_bidirectional() -> None:
    model = noisy(tiny("pre_ln", kind="encoder"))
    ids = tokens(model.cfg, seq=6)
    base = model(ids)
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % model.cfg.vocab_size
    assert not torch.allclose(model(changed)[:, 0], base[:, 0])


def test_encoder_padding_mask_hides_padded_tokens() -> None:
    model = noisy(tiny("post_ln", kind="encoder"))
    ids = tokens(model.cfg, seq=6)
    mask = torch.ones_like(ids)
    mask[:, 4:] = 0
    out = model(ids, attention_mask=mask)
    changed = ids.clone()
    changed[:, 4:] = (changed[:, 4:] + 3) % model.cfg.vocab_size
    torch.testing.assert_close(model(changed, attention_mask=mask)[:, :4], out[:, :4])


def test_config_round_trips_through_json() -> None:
    cfg = tiny("deepnorm", kind="encoder_decoder", topology_params={"alpha": 2.0})
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
