"""The fused (SDPA) attention equals the eager oracle, and the eager path equals softmax
attention written out, for every mask the model builds."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from modeltools import noisy, tokens
from resnorm import ModelConfig
from resnorm.nn.positional import Rotary, apply_rope

SHAPES: list[dict[str, Any]] = [
    dict(kind="decoder"),
    dict(kind="decoder", n_kv_heads=2, positional="rope"),
    dict(kind="decoder", qk_norm="head", norm="rmsnorm"),
    dict(kind="decoder", qk_norm="full", n_kv_heads=1),
    dict(kind="decoder", sliding_window=3, sliding_window_pattern=2, positional="rope"),
    dict(kind="encoder"),
    dict(kind="encoder", sliding_window=2),
    dict(kind="encoder_decoder", positional="rope"),
]


@pytest.mark.parametrize("padding", [False, True])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(f"{v}" for v in s.values()))
def test_sdpa_equals_eager(shape: dict[str, Any], padding: bool) -> None:
    """Padding in a local layer leaves padded queries with no key at all: still finite."""
    base = dict(vocab_size=23, d_model=32, n_heads=4, n_layers=2, **shape)
    sdpa = noisy(ModelConfig(**base, attention="sdpa"))
    eager = noisy(ModelConfig(**base, attention="eager"))
    ids = tokens(sdpa.cfg, seq=10)
    mask = torch.ones_like(ids)
    if padding:
        mask[0, 7:] = 0
    kw: dict[str, Any] = {"attention_mask": mask}
    if shape["kind"] == "encoder_decoder":
        kw["decoder_input_ids"] = ids[:, :6]
    torch.testing.assert_close(sdpa(ids, **kw), eager(ids, **kw), rtol=1e-5, atol=1e-5)


def test_eager_attention_is_softmax_written_out() -> None:
    model = noisy(
        ModelConfig(
            vocab_size=23,
            d_model=32,
            n_heads=4,
            n_layers=1,
            n_kv_heads=2,
            attention="eager",
            attn_softcap=5.0,
            sliding_window=4,
        )
    )
    ids = tokens(model.cfg, seq=9)
    ctx = model.context(ids, True, None)
    attn = model.decoder.layers[0].attn
    x = torch.randn(2, 9, 32)
    q, k, v = attn.project(x, ctx)
    k, v = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(8)
    scores = 5.0 * torch.tanh(scores / 5.0)
    i, j = torch.arange(9)[:, None], torch.arange(9)[None, :]
    allowed = (j <= i) & (i - j < 4)  # causal, window 4 (layer 0 is local)
    probs = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    expected = attn.o_proj((probs @ v).transpose(1, 2).flatten(2))
    torch.testing.assert_close(attn(x, ctx), expected, rtol=1e-5, atol=1e-6)


def test_rope_rotates_pairs_half_split_by_position_angle() -> None:
    """Channel i pairs with i + Dh/2 and turns by t * theta^(-2i/Dh) (GPT-NeoX / HF layout)."""
    head_dim, theta, t = 8, 100.0, 5
    cos, sin = Rotary(head_dim, 16, theta)(16)
    x = torch.randn(1, 1, 16, head_dim)
    y = apply_rope(x, cos, sin)
    for i in range(head_dim // 2):
        angle = t * theta ** (-2 * i / head_dim)
        a, b = x[0, 0, t, i], x[0, 0, t, i + head_dim // 2]
        assert y[0, 0, t, i].item() == pytest.approx(
            (a * math.cos(angle) - b * math.sin(angle)).item(), abs=1e-5
        )
        assert y[0, 0, t, i + head_dim // 2].item() == pytest.approx(
            (b * math.cos(angle) + a * math.sin(angle)).item(), abs=1e-5
        )


def test_rope_scores_depend_only_on_relative_position() -> None:
    cos, sin = Rotary(8, 32, 10000.0)(32)
    q, k = torch.randn(8), torch.randn(8)

    def score(i: int, j: int) -> float:
        qs = apply_rope(q.expand(1, 1, 32, 8), cos, sin)[0, 0, i]
        ks = apply_rope(k.expand(1, 1, 32, 8), cos, sin)[0, 0, j]
        return float(qs @ ks)

    assert score(7, 3) == pytest.approx(score(20, 16), rel=1e-4)
