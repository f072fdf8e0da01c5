"""Learning-rate schedules against their formulas; which parameters AdamW decays."""

from __future__ import annotations

import math

import pytest
import torch

from resnorm.config import TrainConfig
from resnorm.diagnostics.gradients import total_grad_norm
from resnorm.nn.config import ModelConfig
from resnorm.nn.model import build_model
from resnorm.train.optim import (
    build_optimizer,
    clip_grads_,
    fusable,
    lr_at,
    param_groups,
)


def test_warmup_is_linear_from_one_step_to_the_peak() -> None:
    cfg = TrainConfig(steps=100, warmup_steps=10, lr=1e-3, schedule="cosine", min_lr_ratio=0.1)
    assert [lr_at(s, cfg) for s in range(10)] == pytest.approx(
        [1e-3 * (s + 1) / 10 for s in range(10)], rel=1e-12
    )
    assert lr_at(10, cfg) == pytest.approx(1e-3, rel=1e-12)


def test_cosine_decays_to_min_at_the_last_step() -> None:
    cfg = TrainConfig(steps=101, warmup_steps=10, lr=2.0, schedule="cosine", min_lr_ratio=0.1)
    lo, hi, span = 0.2, 2.0, 101 - 10 - 1
    for s in (10, 25, 55, 80, 100):
        p = (s - 10) / span
        assert lr_at(s, cfg) == pytest.approx(lo + (hi - lo) * 0.5 * (1 + math.cos(math.pi * p)))
    assert lr_at(55, cfg) == pytest.approx((lo + hi) / 2)  # halfway: the mean
    assert lr_at(100, cfg) == pytest.approx(lo)
    assert lr_at(500, cfg) == pytest.approx(lo)  # past the budget it stays at the floor


def test_linear_and_constant_schedules() -> None:
    linear = TrainConfig(steps=21, warmup_steps=0, lr=1.0, schedule="linear", min_lr_ratio=0.0)
    assert [lr_at(s, linear) for s in (0, 5, 10, 20)] == pytest.approx([1.0, 0.75, 0.5, 0.0])
    constant = TrainConfig(steps=21, warmup_steps=4, lr=1.0, schedule="constant")
    assert [lr_at(s, constant) for s in (0, 3, 4, 20)] == pytest.approx([0.25, 1.0, 1.0, 1.0])


def _model(**kw: object) -> torch.nn.Module:
    base = dict(vocab_size=16, d_model=16, n_layers=2, n_heads=2, max_seq_len=8)
    return build_model(ModelConfig(**{**base, **kw}))  # type: ignore[arg-type]


def test_decay_on_matrices_not_on_embeddings_norms_or_biases() -> None:
    model = _model(attn_bias=True, tie_embeddings=True)
    decay, no_decay = param_groups(model, TrainConfig(weight_decay=0.1))
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"])
    assert "decoder.layers.0.attn.q_proj.weight" in decay["names"]
    assert "decoder.layers.1.mlp.down.weight" in decay["names"]
    for name in ("embed.tok.weight", "embed.pos.weight", "decoder.layers.0.attn.q_proj.bias",
                 "decoder.layers.0.norm_attn.weight", "decoder.final_norm.weight"):  # fmt: skip
        assert name in no_decay["names"], name
    every = {n for n, _ in model.named_parameters()}
    assert set(decay["names"]) | set(no_decay["names"]) == every
    assert not set(decay["names"]) & set(no_decay["names"])


def test_untied_head_is_a_matrix_and_decayed_embeddings_are_opt_in() -> None:
    decay, _ = param_groups(_model(tie_embeddings=False), TrainConfig())
    assert "lm_head.weight" in decay["names"] and "embed.tok.weight" not in decay["names"]
    decay, _ = param_groups(_model(), TrainConfig(decay_embeddings=True))
    assert "embed.tok.weight" in decay["names"]


def test_optimizer_applies_decay_per_group() -> None:
    model = _model()
    opt = build_optimizer(model, TrainConfig(weight_decay=0.3, beta1=0.8, beta2=0.9, eps=1e-6))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.3, 0.0]
    assert opt.param_groups[0]["betas"] == (0.8, 0.9) and opt.param_groups[0]["eps"] == 1e-6


def _with_grads(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g) * 0.1
    return model


def test_optimizer_is_fused_on_cpu_and_steps_like_the_foreach_implementation() -> None:
    cfg = TrainConfig(lr=1e-2, weight_decay=0.1, warmup_steps=0)
    torch.manual_seed(0)
    fused_model = _model()
    reference = _model()
    reference.load_state_dict(fused_model.state_dict())
    opt = build_optimizer(fused_model, cfg)
    assert all(g["fused"] for g in opt.param_groups)
    groups = param_groups(reference, cfg)
    ref = torch.optim.AdamW(groups, lr=lr_at(0, cfg), betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                            foreach=True)  # fmt: skip
    for step in range(3):
        _with_grads(fused_model, step), _with_grads(reference, step)
        opt.step()
        ref.step()
    for (name, a), b in zip(fused_model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)


def test_optimizer_falls_back_to_foreach_where_no_fused_kernel_exists() -> None:
    assert fusable([torch.zeros(2, 2), torch.zeros(3, dtype=torch.float64)])
    assert not fusable([torch.zeros(2, 2), torch.zeros(2, 2, device="meta")])
    model = _model().to("meta")
    opt = build_optimizer(model, TrainConfig())
    assert all(g["foreach"] and not g["fused"] for g in opt.param_groups)


@pytest.mark.parametrize("max_norm", [1e-3, 0.5, math.inf])
def test_grad_norm_and_clip_equal_torch_clip_grad_norm(max_norm: float) -> None:
    torch.manual_seed(0)
    ours, theirs = _with_grads(_model()), _with_grads(_model())
    params = list(ours.parameters())
    params[3].grad = None  # parameters without a gradient are skipped by both
    list(theirs.parameters())[3].grad = None
    norm = total_grad_norm(params)
    expected = torch.nn.utils.clip_grad_norm_(theirs.parameters(), max_norm, foreach=True)
    torch.testing.assert_close(norm, expected)
    squares = [float(p.grad.double().square().sum()) for p in params if p.grad is not None]
    by_hand = math.sqrt(sum(squares))
    assert float(norm) == pytest.approx(by_hand, rel=1e-6)
    clip_grads_(params, max_norm, norm)
    for a, b in zip(params, theirs.parameters(), strict=True):
        if a.grad is None:
            assert b.grad is None
        else:
            torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)
    if max_norm < by_hand:
        assert float(total_grad_norm(params)) == pytest.approx(max_norm, rel=1e-4)
    assert float(total_grad_norm([torch.nn.Parameter(torch.zeros(2))])) == 0.0
