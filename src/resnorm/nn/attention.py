"""Multi-head attention: self (causal or bidirectional), cross, grouped-query; SDPA or eager.

The eager path computes the softmax explicitly. It is the test oracle for the fused path, it is
the only path that can soft-cap scores, and it passes the attention probabilities through
``self.probs`` (an identity module) so that a forward hook there sees them. Registering such a
hook switches the module to the eager path by itself.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnorm.nn.config import ModelConfig
from resnorm.nn.context import Context
from resnorm.nn.norms import build_norm
from resnorm.nn.positional import apply_rope

FUSE_QKV_MIN_ROWS = 64  # tokens in a batch below which q, k, v run as three products


class AttentionProbs(nn.Identity):
    """Hook point: its input is the (B, H, Tq, Tk) attention probabilities (eager path only)."""


class Attention(nn.Module):
    """``softmax(scale * Q K^T + mask) V`` over ``n_heads`` heads, ``n_kv_heads`` key/value heads.

    Subclasses (a topology's own attention) override one step: ``project`` (x -> q, k, v),
    ``attend`` (q, k, v -> per-head outputs) or ``out`` (per-head outputs -> d_model).

    ``READS`` / ``WRITES`` declare, once, the linears that read the residual stream (input
    d_model) and the one whose output is added to it; ``SCORES`` are the reads that only form
    the attention scores. Inits and nGPT find the matrices through these declarations
    (:func:`resnorm.nn.init.stream_linears`), which fails loudly if a declared one is missing.
    """

    READS: tuple[str, ...] = ("q_proj", "k_proj", "v_proj")
    WRITES: tuple[str, ...] = ("o_proj",)
    SCORES: tuple[str, ...] = ("q_proj", "k_proj")
    OPTIONAL: tuple[str, ...] = ()

    def __init__(self, cfg: ModelConfig, *, cross: bool = False, local: bool = False) -> None:
        super().__init__()
        self.cross, self.local = cross, local
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads_, cfg.head_dim_
        self.scale = cfg.attn_scale if cfg.attn_scale is not None else self.head_dim**-0.5
        self.softcap = cfg.attn_softcap
        self.rope = cfg.positional == "rope" and not cross
        self.force_eager = cfg.attention == "eager" or cfg.attn_softcap is not None
        self.dropout = cfg.dropout
        d, dq, dkv = cfg.d_model, cfg.n_heads * self.head_dim, cfg.n_kv_heads_ * self.head_dim
        self.q_proj = nn.Linear(d, dq, bias=cfg.attn_bias)
        self.k_proj = nn.Linear(d, dkv, bias=cfg.attn_bias)
        self.v_proj = nn.Linear(d, dkv, bias=cfg.attn_bias)
        self.o_proj = nn.Linear(dq, d, bias=cfg.attn_bias)
        self.qk_norm = cfg.qk_norm
        if cfg.qk_norm != "none":
            q_dim, k_dim = (self.head_dim, self.head_dim) if cfg.qk_norm == "head" else (dq, dkv)
            self.q_norm = build_norm(cfg.norm, q_dim, cfg.norm_eps, cfg.norm_bias)
            self.k_norm = build_norm(cfg.norm, k_dim, cfg.norm_eps, cfg.norm_bias)
        self.probs = AttentionProbs()

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        if ctx.cache is not None and self.cross:
            q, k, v = ctx.cache.cross(self, x, ctx)  # the memory's keys/values computed once
        else:
            q, k, v = self.project(x, ctx)  # (B, H, T, Dh), (B, Hkv, S, Dh), (B, Hkv, S, Dh)
            if ctx.cache is not None:
                k, v = ctx.cache.update(self, k, v)  # earlier positions' keys/values prepended
        return self.out(self.attend(q, k, v, ctx))

    def heads(self, x: Tensor) -> Tensor:
        """(B, T, H*Dh) -> (B, H, T, Dh)."""
        return x.unflatten(-1, (-1, self.head_dim)).transpose(1, 2)

    def project(self, x: Tensor, ctx: Context) -> tuple[Tensor, Tensor, Tensor]:
        if self.cross:
            assert ctx.memory is not None, "cross-attention needs ctx.memory"
            q, k, v = self.q_proj(x), self.k_proj(ctx.memory), self.v_proj(ctx.memory)
        else:
            q, k, v = self.qkv(x)
        if self.qk_norm == "full":
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = self.heads(q), self.heads(k), self.heads(v)
        if self.qk_norm == "head":
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rope:
            assert ctx.rope is not None, "RoPE model without rotary angles in the context"
            cos, sin = ctx.rope
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return q, k, v

    def qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``q_proj(x), k_proj(x), v_proj(x)``, as one matrix product over the stacked weights.

        One product reads ``x`` once and, under autocast, casts it once: 3 products cost ~15%
        more per bf16 step on CPU (bench/). A hook on one of the projections sees its call, so
        then they run separately; so do a few rows (a cached decoding step), for which copying
        the weights into one matrix costs more than the three products (bench/generation.py).
        """
        projs = (self.q_proj, self.k_proj, self.v_proj)
        few_rows = x.shape[:-1].numel() < FUSE_QKV_MIN_ROWS
        if (
            few_rows
            or any(p._forward_hooks or p._forward_pre_hooks for p in projs)
            or _global_hooks()
        ):
            return self.q_proj(x), self.k_proj(x), self.v_proj(x)
        weight = torch.cat([p.weight for p in projs])
        bias = torch.cat([p.bias for p in projs]) if self.q_proj.bias is not None else None
        q, k, v = F.linear(x, weight, bias).split([p.out_features for p in projs], dim=-1)
        return q, k, v

    def mask(self, ctx: Context) -> tuple[Tensor | None, bool]:
        """The boolean mask for this module and whether to let SDPA apply causality itself."""
        if self.cross:
            return ctx.memory_mask, False
        if self.local:
            return ctx.local_mask, False
        return ctx.mask, ctx.causal and ctx.mask is None

    def attend(self, q: Tensor, k: Tensor, v: Tensor, ctx: Context) -> Tensor:
        if self.n_kv_heads != self.n_heads:
            groups = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        mask, causal = self.mask(ctx)
        dropout = self.dropout if self.training else 0.0
        if self.force_eager or self.probs._forward_hooks:
            return self.eager(q, k, v, mask, causal, dropout)
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=causal, scale=self.scale
        )

    def eager(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool, dropout: float
    ) -> Tensor:
        scores = (q @ k.transpose(-2, -1)) * self.scale  # (B, H, T, S)
        if self.softcap is not None:
            scores = self.softcap * torch.tanh(scores / self.softcap)
        if causal:
            t, s = scores.shape[-2:]
            mask = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(s - t)
        if mask is not None:
            scores = scores.masked_fill(~mask, -math.inf)
        # The softmax in at least fp32 (bf16/fp16 scores would lose mass), and in fp64 for fp64.
        wide = scores if scores.dtype == torch.float64 else scores.float()
        probs = self.probs(torch.softmax(wide, dim=-1).to(q.dtype))
        return F.dropout(probs, dropout, self.training) @ v

    def out(self, y: Tensor) -> Tensor:
        """(B, H, T, Dh) -> (B, T, D)."""
        return self.o_proj(y.transpose(1, 2).flatten(2))


def _global_hooks() -> bool:
    """Whether a global module forward hook is registered (it must see every call)."""
    m = nn.modules.module
    return bool(m._global_forward_hooks or m._global_forward_pre_hooks)
