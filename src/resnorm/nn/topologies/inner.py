"""Topologies that also change the inside of a sublayer: NormFormer and HybridNorm."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from resnorm.nn.attention import Attention
from resnorm.nn.config import ModelConfig
from resnorm.nn.context import Context
from resnorm.nn.mlp import MLP
from resnorm.nn.norms import build_norm
from resnorm.nn.positional import apply_rope
from resnorm.nn.topologies.base import Branch, Topology, register
from resnorm.nn.topologies.placement import add_norms

if TYPE_CHECKING:
    from resnorm.nn.model import Layer


class HeadScaleAttention(Attention):
    """Attention whose per-head outputs are scaled by a learnable ``head_scale`` (init 1)."""

    def __init__(self, cfg: ModelConfig, *, cross: bool, local: bool) -> None:
        super().__init__(cfg, cross=cross, local=local)
        self.head_scale = nn.Parameter(torch.ones(cfg.n_heads))

    def out(self, y: Tensor) -> Tensor:
        return super().out(y * self.head_scale[:, None, None])  # (B, H, T, Dh) * (H, 1, 1)


class MidNormMLP(MLP):
    """``down(N(act(up(x))))``: the feed-forward with a norm on its hidden activation."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.norm_mid = build_norm(cfg.norm, cfg.d_ff_, cfg.norm_eps, cfg.norm_bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(self.norm_mid(self.hidden(x)))


@register
class NormFormer(Topology):
    """NormFormer: Pre-LN plus three extra operations.

    Attention ``x <- x + N(HeadScale(MHA(N(x))))``; FFN ``x <- x + W2 N(act(W1 N(x)))``; final
    norm::

        x ──┬──────────────────────────────────────────┐
            └── N ── MHA ── HeadScale ── N ─────────── (+) ──>
        x ──┬──────────────────────────────────────────┐
            └── N ── W1 ── act ── N ── W2 ──────────── (+) ──>

    Shleifer et al. 2021, NormFormer (arXiv:2110.09456); head scales start at 1. The optional
    residual scaling of the paper's larger models is not included. With a gated MLP the mid norm
    applies to the gated product. Versus pre_ln: rebalances gradient magnitudes across layers
    (early layers' too large, late layers' too small in Pre-LN).
    """

    name = "normformer"
    equation = "x <- x + N(HeadScale(MHA(N(x)))); x <- x + W2 N(act(W1 N(x))); final norm"
    source = "Shleifer et al. 2021 NormFormer (arXiv:2110.09456)"

    def make_attention(self, layer_index: int, *, cross: bool, local: bool) -> Attention:
        return HeadScaleAttention(self.cfg, cross=cross, local=local)

    def make_mlp(self, layer_index: int) -> nn.Module:
        return MidNormMLP(self.cfg)

    def setup_layer(self, layer: Layer) -> None:
        add_norms(self, layer)
        for s in layer.sublayers:
            if s != "mlp":
                layer.add_module(f"post_norm_{s}", self.norm())

    def sublayer(self, layer: Layer, s: str, x: Tensor, f: Branch) -> Tensor:
        if s == "mlp":
            return x + f(layer.norm(s)(x))
        return x + getattr(layer, f"post_norm_{s}")(f(layer.norm(s)(x)))  # type: ignore[no-any-return]


class QKVNormAttention(Attention):
    """Attention with norms on the full query, key and value projections (HybridNorm)."""

    def __init__(self, cfg: ModelConfig, *, cross: bool, local: bool) -> None:
        super().__init__(cfg, cross=cross, local=local)
        dq, dkv = cfg.n_heads * cfg.head_dim_, cfg.n_kv_heads_ * cfg.head_dim_
        self.q_norm = build_norm(cfg.norm, dq, cfg.norm_eps, cfg.norm_bias)
        self.k_norm = build_norm(cfg.norm, dkv, cfg.norm_eps, cfg.norm_bias)
        self.v_norm = build_norm(cfg.norm, dkv, cfg.norm_eps, cfg.norm_bias)

    def project(self, x: Tensor, ctx: Context) -> tuple[Tensor, Tensor, Tensor]:
        source = ctx.memory if self.cross else x
        assert source is not None, "cross-attention needs ctx.memory"
        q = self.heads(self.q_norm(self.q_proj(x)))
        k = self.heads(self.k_norm(self.k_proj(source)))
        v = self.heads(self.v_norm(self.v_proj(source)))
        if self.rope:
            assert ctx.rope is not None
            cos, sin = ctx.rope
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return q, k, v


@dataclass(frozen=True)
class HybridNormParams:
    """Attributes: star: HybridNorm*: the first layer also pre-normalizes its attention input."""

    star: bool = False


@register
class HybridNorm(Topology):
    """HybridNorm: QKV-normalized attention on the raw stream, Post-LN around the FFN.

    ``x' = x + Attn_QKVNorm(x)``, ``x <- N(x' + FFN(x'))``; no final norm (the FFN's post-norm
    ends every layer)::

        x ──┬─────────────────────────────┐
            └── [Q, K, V each normed] Attn ─ (+) ── x' ──┬────────────┐
                                                         └── FFN ── (+) ── N ──>

    Zhuo et al. 2025, HybridNorm (arXiv:2503.04598). HybridNorm* (``star``) adds a pre-norm on
    the first layer's attention input. Cross-attention (encoder-decoder) follows the attention
    rule. ``qk_norm`` is superseded by the QKV norms. Versus pre_ln: the stream is normalized
    once per layer after the FFN, and attention is stabilized inside.
    """

    name = "hybrid_norm"
    equation = "x' = x + Attn(QKV-normed)(x); x <- N(x' + FFN(x'))"
    source = "Zhuo et al. 2025 HybridNorm (arXiv:2503.04598)"
    Params = HybridNormParams
    final_norm = False

    def make_attention(self, layer_index: int, *, cross: bool, local: bool) -> Attention:
        return QKVNormAttention(self.cfg, cross=cross, local=local)

    def setup_layer(self, layer: Layer) -> None:
        layer.add_module("norm_mlp", self.norm())
        if self.params.star and layer.index == 0:
            layer.add_module("norm_attn", self.norm())

    def sublayer(self, layer: Layer, s: str, x: Tensor, f: Branch) -> Tensor:
        if s == "mlp":
            return layer.norm(s)(x + f(x))  # type: ignore[no-any-return]
        if s == "attn" and hasattr(layer, "norm_attn"):
            return x + f(layer.norm(s)(x))
        return x + f(x)
