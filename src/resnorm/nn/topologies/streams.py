"""Topologies whose state is more than one residual tensor: ResiDual's dual stream, value residual's
first-layer values, DenseFormer's history of block outputs (hyper-connections live in ``hyper.py``).

Each keeps its extra state local to one forward pass of one stack (a Python variable in ``trunk``
or ``Context.scratch``), so an encoder and a decoder never share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from resnorm.errors import ConfigError
from resnorm.nn.attention import Attention
from resnorm.nn.config import ModelConfig
from resnorm.nn.context import Context
from resnorm.nn.topologies.base import Topology, register
from resnorm.nn.topologies.placement import PreLN, add_norms

if TYPE_CHECKING:
    from resnorm.nn.model import Layer, Stack


@register
class ResiDual(Topology):
    """ResiDual: a Post-LN stream and a Pre-LN-like dual stream fed by the same branch outputs.

    Over every sublayer k (attention, cross-attention, feed-forward) of the stack::

        x_{k+1} = N_k(x_k + F_k(x_k))        Post-LN stream
        d_{k+1} = d_k + F_k(x_k),  d_0 = x_0  dual stream (unnormalized sum of branch outputs)
        out     = x_K + N_dual(d_K)

        x_k ──┬─────────────┐
              └── F_k ──┬─ (+) ── N_k ── x_{k+1}
                        │
        d_k ───────────(+)──────────── d_{k+1}          out = x_K + N_dual(d_K)

    Xie et al. 2023, ResiDual: Transformer with Dual Residual Connections (arXiv:2304.14802).
    ``N_dual`` is one stack-level norm (``stack.norm_dual``) applied once, after the loop; it is
    the output norm, so there is no ``final_norm``. The paper evaluates encoder-decoder
    translation models (both stacks use the rule); a decoder-only or encoder-only model uses it in
    its single stack. Versus pre_ln: the sublayers read the normalized Post-LN stream (no
    representation collapse), while the dual stream carries every branch output unnormalized to
    the output like pre_ln's stream does (no vanishing gradient).
    """

    name = "resi_dual"
    equation = "x <- N(x + F(x)); d <- d + F(x), d0 = x0; out = x_K + N(d_K)"
    source = "Xie et al. 2023 ResiDual (arXiv:2304.14802)"
    family = "stream"
    final_norm = False

    def setup_layer(self, layer: Layer) -> None:
        add_norms(self, layer)

    def setup_stack(self, stack: Stack) -> None:
        stack.add_module("norm_dual", self.norm())

    def trunk(self, stack: Stack, x: Tensor, ctx: Context) -> Tensor:
        dual = x  # d_0 = x_0
        for layer in stack.layers:
            for s in layer.sublayers:
                out = layer.branch(s, ctx)(x)  # F_k(x_k), once for both streams
                dual = dual + out
                x = layer.tap(s)(layer.norm(s)(x + out))
        return x + stack.get_submodule("norm_dual")(dual)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ValueResidualParams:
    """Attributes:
    lam: weight of the layer's own values, in [0, 1]; ``1 - lam`` goes to layer 1's values
        (1 = pre_ln; the paper's ResFormer is 0.5).
    learnable: each layer l >= 2 learns its own lambda, initialized to ``lam``.
    """

    lam: float = 0.5
    learnable: bool = False


VALUE_RESIDUAL_KEY = "value_residual.v1"  # Context.scratch key of the first layer's values


class ValueResidualAttention(Attention):
    """Self-attention whose values are mixed with the first layer's: ``lam V_l + (1 - lam) V_1``.

    The first layer stores its values (B, H_kv, T, Dh) in ``ctx.scratch``; later layers read them.
    With ``learnable``, layers l >= 2 hold a scalar ``value_lambda``.
    """

    def __init__(
        self, cfg: ModelConfig, *, local: bool, layer_index: int, lam: float, learnable: bool
    ) -> None:
        super().__init__(cfg, cross=False, local=local)
        self.layer_index, self.lam = layer_index, lam
        self.value_lambda = (
            nn.Parameter(torch.tensor(lam)) if learnable and layer_index > 0 else None
        )

    def project(self, x: Tensor, ctx: Context) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = super().project(x, ctx)
        if self.layer_index == 0:
            ctx.scratch[VALUE_RESIDUAL_KEY] = v
            return q, k, v
        v1 = ctx.scratch.get(VALUE_RESIDUAL_KEY)
        assert v1 is not None, "value residual: layer 1 did not store its values in ctx.scratch"
        lam = self.value_lambda if self.value_lambda is not None else self.lam
        return q, k, lam * v + (1 - lam) * v1


@register
class ValueResidual(PreLN):
    """Value residual (ResFormer): Pre-LN, and every layer's attention values lean on layer 1's.

    ``x <- x + F(N(x))`` with, in self-attention of layer l >= 2,
    ``V_l <- lam V_l + (1 - lam) V_1`` (V_1: layer 1's values, before mixing); final norm::

        layer 1:   x ── N ── Attn ──> ... stores V_1
        layer l:   x ── N ── q, k, V_l ── softmax(q k^T) (lam V_l + (1 - lam) V_1) ── o_proj ──(+)

    Zhou et al. 2024, Value Residual Learning / ResFormer (arXiv:2410.17897); the first version's
    ``V_l + V_1`` is ``lam = 0.5`` up to a factor 2, later versions learn the two weights
    (here ``learnable``: one ``value_lambda`` per layer, the other weight ``1 - lambda``).
    Cross-attention is untouched. The paper studies decoder-only LMs; an encoder mixes its own
    bidirectional layers' values the same way, and in an encoder-decoder each stack mixes with its
    own first layer (the scratch is per stack). Versus pre_ln: a direct path from the first
    layer's token values into every layer's attention output; ``lam = 1`` is pre_ln.
    """

    name = "value_residual"
    equation = "x <- x + F(N(x)); attention values V_l <- lam V_l + (1 - lam) V_1; final norm"
    source = "Zhou et al. 2024 ResFormer (arXiv:2410.17897)"
    family = "stream"
    Params = ValueResidualParams

    @classmethod
    def check(cls, params: ValueResidualParams, cfg: ModelConfig) -> None:  # type: ignore[override]
        if not 0.0 <= params.lam <= 1.0:
            raise ConfigError("model.topology_params.lam", f"must be in [0, 1], got {params.lam}")

    def make_attention(self, layer_index: int, *, cross: bool, local: bool) -> Attention:
        if cross:
            return Attention(self.cfg, cross=True, local=local)
        p = self.params
        return ValueResidualAttention(
            self.cfg, local=local, layer_index=layer_index, lam=p.lam, learnable=p.learnable
        )

    def init_(self, stack: Stack) -> None:
        for layer in stack.layers:
            attn = layer.attn
            if isinstance(attn, ValueResidualAttention) and attn.value_lambda is not None:
                nn.init.constant_(attn.value_lambda, self.params.lam)


@register
class DenseFormer(PreLN):
    """DenseFormer: Pre-LN blocks, each followed by a depth-weighted average (DWA) of all
    block outputs so far and the embeddings.

    With ``X_0`` the embedding output and ``X_i = Block_i(Y_{i-1})`` (a pre_ln layer)::

        Y_i = sum_{j=0..i} a_ij X_j,   a_ii = 1, a_ij = 0 (j < i) at init;  out = N(Y_L)

        X_0 ──────────────────────────────────┬──────────────────────┬── ...
                                              │ a_10                 │ a_20
        Y_0 = X_0 ── Block_1 ── X_1 ── a_11 ─(+)── Y_1 ── Block_2 ── X_2 ── a_22 ─(+)── Y_2 ...
                                 └─────────────────────────────── a_21 ─┘

    Pagliardini et al. 2024, DenseFormer (arXiv:2402.02622), the dense variant (dilation 1,
    period 1). Layer i (0-based) holds ``dwa_weights`` of length i + 2: ``[a_i0, ..., a_ii]``,
    weight j for ``X_j`` (``X_0`` the embeddings). The taps see the stream inside the block,
    i.e. ``tap_mlp`` sees ``X_i`` before the average. The paper studies decoder-only LMs; an
    encoder averages its own bidirectional blocks, and each stack of an encoder-decoder averages
    over its own embeddings and blocks. Versus pre_ln: each block reads a learned mix of all
    earlier representations instead of their plain running sum; at init it is pre_ln.
    """

    name = "denseformer"
    equation = "pre_ln blocks X_i; x_i <- sum_{j<=i} a_ij X_j, X_0 = embeddings; final norm"
    source = "Pagliardini et al. 2024 DenseFormer (arXiv:2402.02622)"
    family = "stream"

    def setup_layer(self, layer: Layer) -> None:
        super().setup_layer(layer)
        layer.register_parameter("dwa_weights", nn.Parameter(torch.empty(layer.index + 2)))
        _reset_dwa(layer)

    def init_(self, stack: Stack) -> None:
        for layer in stack.layers:
            _reset_dwa(layer)

    def trunk(self, stack: Stack, x: Tensor, ctx: Context) -> Tensor:
        outputs = [x]  # X_0
        for layer in stack.layers:
            outputs.append(self.layer(layer, x, ctx))  # X_i
            weights = layer.get_parameter("dwa_weights")
            x = weights[0] * outputs[0]
            for a, out in zip(weights[1:], outputs[1:], strict=True):
                x = x + a * out
        return x


def _reset_dwa(layer: Layer) -> None:
    """DWA init: the block's own output with weight 1, everything else 0 (pre_ln)."""
    with torch.no_grad():
        weights = layer.get_parameter("dwa_weights")
        weights.zero_()
        weights[-1] = 1.0
