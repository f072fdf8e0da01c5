"""Hyper-connections: n residual streams, mixed before and after each sublayer by learnable
width and depth connections (static, or dynamic: predicted from the streams themselves)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from resnorm.errors import ConfigError
from resnorm.nn.config import ModelConfig
from resnorm.nn.context import Context
from resnorm.nn.topologies.base import Branch, Topology, register
from resnorm.nn.topologies.placement import add_norms

if TYPE_CHECKING:
    from resnorm.nn.model import Layer, Stack

DYNAMIC_SCALE_INIT = 0.01  # s_alpha, s_beta (Zhu et al. 2024, Sec. 2.2 and Algorithm 2)
MAX_EXPANSION = 64  # streams; the paper tries 1 to 8, and the stream costs n x the activations


@dataclass(frozen=True)
class HyperConnectionsParams:
    """Attributes:
    expansion: n, the number of residual streams (>= 1; the paper's best is 4).
    dynamic: add the input-dependent weights of DHC to the static ones (SHC when False).
    """

    expansion: int = 4
    dynamic: bool = False


@register
class HyperConnections(Topology):
    """Hyper-connections: n parallel residual streams with learnable read-in and write-back.

    ``H`` (n, B, T, d) starts as n copies of the embeddings. Around each sublayer (attention,
    cross-attention, feed-forward), with ``A_m`` (n, 1), ``A_r`` (n, n), ``B`` (1, n)::

        h = A_m^T H                       width connection: the sublayer's input
        H <- A_r^T H + B^T F(N(h))        depth connection: F with its pre-norm ``norm_{s}``
        out = N_final(sum_i H_i)

        H ──┬── A_r^T ─────────────────────────────(+)── H
            └── A_m^T ── h ── N ── F ── x B^T ──────┘

    Static init (Eq. 14): ``A_r = I``, ``B = 1``, ``A_m = e_(k mod n)``, where k is the
    *sublayer's* index over the stack (attention of layer l is 2l, its feed-forward 2l + 1;
    3l, 3l + 1, 3l + 2 with cross-attention). The paper's k indexes the residual "layers" T^k
    of Sec. 2, each a single attention or FFN branch (the reimplementation
    alfredclwong/hyper-connections counts the same way). Dynamic (DHC, Eqs. 11-13), with
    ``Hn = N_hc(H)`` per stream (``hc_{s}_norm``, the configured norm)::

        [A_m | A_r](H) = [A_m | A_r] + s_a tanh(Hn W_a)     W_a (d, n+1) = 0, s_a = 0.01 at init
        B(H)           = B + s_b tanh(Hn W_b)^T             W_b (d,)     = 0, s_b = 0.01 at init

    Per layer and sublayer s: ``hc_{s}_static_alpha`` (n, n+1) = ``[A_m | A_r]``,
    ``hc_{s}_static_beta`` (n,) = ``B``, and if dynamic ``hc_{s}_norm``,
    ``hc_{s}_dynamic_alpha_fn``, ``hc_{s}_dynamic_alpha_scale``, ``hc_{s}_dynamic_beta_fn``,
    ``hc_{s}_dynamic_beta_scale`` (the reference pseudocode's names). The taps see all n streams
    (n, B, T, d).

    Zhu et al. 2024, Hyper-Connections (arXiv:2409.19606). The paper studies decoder-only LMs
    and ViTs; in an encoder-decoder each stack has its own streams, cross-attention is one more
    hyper-connected sublayer and the decoder reads the encoder's normalized stream sum.
    Versus pre_ln (n = 1 with static identity weights *is* pre_ln): the n streams and learnable
    mixing let the network trade the gradient flow of Pre-LN against the representation
    diversity of Post-LN, and rearrange its layers sequentially or in parallel. At init every
    stream holds the pre_ln stream, so the output equals pre_ln's up to the final norm's eps.
    """

    name = "hyper_connections"
    equation = "n streams: H <- A_r^T H + B^T F(N(A_m^T H)); out = N(sum_i H_i)"
    source = "Zhu et al. 2024 Hyper-Connections (arXiv:2409.19606)"
    family = "stream"
    Params = HyperConnectionsParams

    @classmethod
    def check(cls, params: HyperConnectionsParams, cfg: ModelConfig) -> None:  # type: ignore[override]
        if not 1 <= params.expansion <= MAX_EXPANSION:
            raise ConfigError(
                "model.topology_params.expansion",
                f"must be in [1, {MAX_EXPANSION}], got {params.expansion}",
            )

    def setup_layer(self, layer: Layer) -> None:
        add_norms(self, layer)
        n, d = self.params.expansion, self.cfg.d_model
        shapes = {"static_alpha": (n, n + 1), "static_beta": (n,)}
        if self.params.dynamic:
            shapes |= {
                "dynamic_alpha_fn": (d, n + 1),
                "dynamic_alpha_scale": (1,),
                "dynamic_beta_fn": (d,),
                "dynamic_beta_scale": (1,),
            }
        for s in layer.sublayers:
            if self.params.dynamic:
                layer.add_module(f"hc_{s}_norm", self.norm())
            for key, shape in shapes.items():
                layer.register_parameter(f"hc_{s}_{key}", nn.Parameter(torch.empty(shape)))
        self._reset(layer)

    def init_(self, stack: Stack) -> None:
        for layer in stack.layers:
            self._reset(layer)

    def _reset(self, layer: Layer) -> None:
        """Eq. 14: the static weights make every stream a copy of the pre_ln stream."""
        n = self.params.expansion
        with torch.no_grad():
            for position, s in enumerate(layer.sublayers):
                k = layer.index * len(layer.sublayers) + position  # sublayer index over the stack
                alpha = layer.get_parameter(f"hc_{s}_static_alpha")
                alpha.zero_()
                alpha[k % n, 0] = 1.0  # A_m = e_(k mod n)
                alpha[:, 1:] = torch.eye(n)  # A_r = I
                layer.get_parameter(f"hc_{s}_static_beta").fill_(1.0)  # B = 1
                if self.params.dynamic:
                    layer.get_parameter(f"hc_{s}_dynamic_alpha_fn").zero_()
                    layer.get_parameter(f"hc_{s}_dynamic_beta_fn").zero_()
                    layer.get_parameter(f"hc_{s}_dynamic_alpha_scale").fill_(DYNAMIC_SCALE_INIT)
                    layer.get_parameter(f"hc_{s}_dynamic_beta_scale").fill_(DYNAMIC_SCALE_INIT)

    def weights(self, layer: Layer, s: str, streams: Tensor) -> tuple[Tensor, Tensor]:
        """``[A_m | A_r]`` as (n, B, T, n+1) and ``B`` as (n, B, T) (size 1 for B, T if static)."""

        def p(key: str) -> Tensor:
            return layer.get_parameter(f"hc_{s}_{key}")

        alpha = p("static_alpha")[:, None, None, :]
        beta = p("static_beta")[:, None, None]
        if self.params.dynamic:
            normed = layer.get_submodule(f"hc_{s}_norm")(streams)  # (n, B, T, d)
            alpha = alpha + p("dynamic_alpha_scale") * torch.tanh(normed @ p("dynamic_alpha_fn"))
            beta = beta + p("dynamic_beta_scale") * torch.tanh(normed @ p("dynamic_beta_fn"))
        return alpha, beta

    def connect(self, layer: Layer, s: str, streams: Tensor, f: Branch) -> Tensor:
        """One hyper-connected sublayer: the new (n, B, T, d) streams."""
        alpha, beta = self.weights(layer, s, streams)
        mixed = torch.einsum("i...j,i...d->j...d", alpha, streams)  # (n+1, B, T, d)
        out = f(layer.norm(s)(mixed[0]))  # F(N(A_m^T H)), (B, T, d)
        return mixed[1:] + beta[..., None] * out  # A_r^T H + B^T F

    def trunk(self, stack: Stack, x: Tensor, ctx: Context) -> Tensor:
        n = self.params.expansion
        streams = x.unsqueeze(0).expand(n, *x.shape)  # (n, B, T, d): n copies of the embeddings
        for layer in stack.layers:
            for s in layer.sublayers:
                streams = layer.tap(s)(self.connect(layer, s, streams, layer.branch(s, ctx)))
        return streams.sum(0)
