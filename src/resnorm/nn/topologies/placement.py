"""Where the norm sits around one residual stream: Post-LN, Pre-LN and their re-placements."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor

from resnorm.errors import ConfigError
from resnorm.nn.config import ModelConfig
from resnorm.nn.context import Context
from resnorm.nn.topologies.base import Branch, StackSpec, Topology, register

if TYPE_CHECKING:
    from resnorm.nn.model import Layer


def add_norms(topology: Topology, layer: Layer, prefix: str = "norm") -> None:
    """One norm per sublayer, ``{prefix}_{s}``."""
    for s in layer.sublayers:
        layer.add_module(f"{prefix}_{s}", topology.norm())


@register
class PostLN(Topology):
    """Post-LN: normalize after the residual add.

    ``x <- N(x + F(x))``; no final norm (the stream is normalized after every sublayer)::

        x ──┬──────────┐
            └── F ── (+) ── N ──>

    Vaswani et al. 2017, Attention Is All You Need (arXiv:1706.03762); BERT.
    Versus pre_ln: the norm sits on the stream itself, so every layer rescales what earlier
    layers wrote; gradients near the output are large at init and deep stacks need warmup.
    """

    name = "post_ln"
    equation = "x <- N(x + F(x))"
    source = "Vaswani et al. 2017 (arXiv:1706.03762); BERT"
    final_norm = False

    def setup_layer(self, layer: Layer) -> None:
        add_norms(self, layer)

    def sublayer(self, layer: Layer, s: str, x: Tensor, f: Branch) -> Tensor:
        return layer.norm(s)(x + f(x))  # type: ignore[no-any-return]


@register
class PreLN(Topology):
    """Pre-LN: normalize the sublayer's input, leave the stream untouched.

    ``x <- x + F(N(x))``, and a final norm before the head::

        x ──┬─────────────────┐
            └── N ── F ──── (+) ──>

    Baevski & Auli 2019; GPT-2 (Radford et al. 2019); Xiong et al. 2020 (arXiv:2002.04745).
    The reference the other topologies are described against.
    """

    name = "pre_ln"
    equation = "x <- x + F(N(x)); final norm"
    source = "Baevski & Auli 2019; GPT-2; Xiong et al. 2020 (arXiv:2002.04745)"

    def setup_layer(self, layer: Layer) -> None:
        add_norms(self, layer)

    def sublayer(self, layer: Layer, s: str, x: Tensor, f: Branch) -> Tensor:
        return x + f(layer.norm(s)(x))


@register
class NoResidual(Topology):
    """No skip connection (ablation): ``x <- F(N(x))``, final norm.

    ``x ── N ── F ──>``

    The ablation behind the seed's first claim; Dong et al. 2021, Attention is not all you need:
    pure attention loses rank doubly exponentially with depth (arXiv:2103.03404).
    Versus pre_ln: the identity path is removed.
    """

    name = "no_residual"
    equation = "x <- F(N(x)); final norm (ablation)"
    source = "ablation; Dong et al. 2021 (arXiv:2103.03404)"
    family = "ablation"

    def setup_layer(self, layer: Layer) -> None:
        add_norms(self, layer)

    def sublayer(self, layer: Layer, s: str, x: Tensor, f: Branch) -> Tensor:
        return f(layer.norm(s)(x))


@register
class SandwichLN(Topology):
    """Sandwich-LN: normalize the sublayer's input and its output.

    ``x <- x + N_out(F(N_in(x)))``, final norm::

        x ──┬──────────────────────────┐
            └── N_in ── F ── N_out ── (+) ──>

    Ding et al. 2021, CogView (arXiv:2105.13290); Gemma-2 (its norms store ``1 + w``).
    Versus pre_ln: the branch output is normalized too, bounding what each sublayer adds.
    """

    name = "sandwich_ln"
    equation = "x <- x + N_out(F(N_in(x))); final norm"
    source = "Ding et al. 2021 CogView (arXiv:2105.13290); Gemma-2"

    def setup_layer(self, layer: Layer) -> None:
        add_norms(self, layer, "norm")
        add_norms(self, layer, "post_norm")

    def sublayer(self, layer: Layer, s: str, x: Tensor, f: Branch) -> Tensor:
        return x + getattr(layer, f"post_norm_{s}")(f(layer.norm(s)(x)))  # type: ignore[no-any-return]


@register
class PeriLN(SandwichLN):
    """Peri-LN: Sandwich-LN plus a norm on the embedding output.

    ``x_0 <- N(embed)``; ``x <- x + N_out(F(N_in(x)))``; final norm::

        embed ── N ── x ──┬──────────────────────────┐
                          └── N_in ── F ── N_out ── (+) ──>

    Kim et al. 2025, Peri-LN (arXiv:2502.02732).
    Versus pre_ln: both ends of every branch and the embeddings are normalized.
    """

    name = "peri_ln"
    equation = "x0 <- N(embed); x <- x + N_out(F(N_in(x))); final norm"
    source = "Kim et al. 2025 Peri-LN (arXiv:2502.02732)"
    embed_norm = True


@register
class ResPostLN(Topology):
    """Res-post-norm ("reordered norm"): normalize the branch output only.

    ``x <- x + N(F(x))``, final norm::

        x ──┬──────────────┐
            └── F ── N ── (+) ──>

    OLMo-2 (OLMo et al. 2024, arXiv:2501.00656); Swin Transformer v2 (arXiv:2111.09883).
    Versus pre_ln: the sublayer reads the raw stream; its output, not its input, is normalized.
    """

    name = "res_post_ln"
    equation = "x <- x + N(F(x)); final norm"
    source = "OLMo-2 (arXiv:2501.00656); Swin-v2 res-post-norm (arXiv:2111.09883)"

    def setup_layer(self, layer: Layer) -> None:
        add_norms(self, layer)

    def sublayer(self, layer: Layer, s: str, x: Tensor, f: Branch) -> Tensor:
        return x + layer.norm(s)(f(x))


@dataclass(frozen=True)
class LNSParams:
    """Attributes: depth_scaling: divide layer l's norm output by sqrt(l) (False = pre_ln)."""

    depth_scaling: bool = True


@register
class LNS(Topology):
    """LayerNorm Scaling: Pre-LN with layer l's norm output scaled by ``1/sqrt(l)``.

    ``x <- x + F(N(x) / sqrt(l))``, l = 1..L, final norm::

        x ──┬──────────────────────────────┐
            └── N ── x 1/sqrt(l) ── F ── (+) ──>

    Sun et al. 2025, The Curse of Depth in LLMs (arXiv:2502.05795).
    Versus pre_ln: damps the growth of the output variance with depth so deep layers still
    contribute; identical to pre_ln at layer 1.
    """

    name = "lns"
    equation = "x <- x + F(N(x) / sqrt(l)); final norm"
    source = "Sun et al. 2025 Curse of Depth (arXiv:2502.05795)"
    Params = LNSParams

    def setup_layer(self, layer: Layer) -> None:
        add_norms(self, layer)

    def sublayer(self, layer: Layer, s: str, x: Tensor, f: Branch) -> Tensor:
        depth = math.sqrt(layer.index + 1) if self.params.depth_scaling else 1.0
        return x + f(layer.norm(s)(x) / depth)


@dataclass(frozen=True)
class MixLNParams:
    """Attributes: post_fraction: the first floor(a L) layers are Post-LN (paper: 0.25)."""

    post_fraction: float = 0.25


@register
class MixLN(Topology):
    """Mix-LN: Post-LN in the first ``floor(a L)`` layers, Pre-LN in the rest.

    ``x <- N(x + F(x))`` for l <= floor(a L), else ``x <- x + F(N(x))``; final norm unless every
    layer is Post-LN::

        layers 1..aL:   x ── (+ F) ── N ──>      layers aL+1..L:   x ── (+ F(N(.))) ──>

    Li et al. 2024, Mix-LN (arXiv:2412.13795). With a = 0 it is pre_ln, with a = 1 post_ln.
    Versus pre_ln: early layers get Post-LN's larger gradients, deep layers keep Pre-LN's.
    """

    name = "mix_ln"
    equation = "l <= floor(aL): x <- N(x + F(x)); else x <- x + F(N(x)); a = 0.25"
    source = "Li et al. 2024 Mix-LN (arXiv:2412.13795)"
    Params = MixLNParams

    def __init__(self, cfg: ModelConfig, spec: StackSpec) -> None:
        super().__init__(cfg, spec)
        self.n_post = math.floor(self.params.post_fraction * self.spec.n_layers)
        self.final_norm = self.n_post < self.spec.n_layers

    @classmethod
    def check(cls, params: MixLNParams, cfg: ModelConfig) -> None:  # type: ignore[override]
        if not 0.0 <= params.post_fraction <= 1.0:
            raise ConfigError(
                "model.topology_params.post_fraction",
                f"must be in [0, 1], got {params.post_fraction}",
            )

    def setup_layer(self, layer: Layer) -> None:
        add_norms(self, layer)

    def sublayer(self, layer: Layer, s: str, x: Tensor, f: Branch) -> Tensor:
        if layer.index < self.n_post:
            return layer.norm(s)(x + f(x))  # type: ignore[no-any-return]
        return x + f(layer.norm(s)(x))


@register
class B2T(Topology):
    """Bottom-to-top connection: Post-LN plus the layer's input added before its last norm.

    ``h = N(x + Attn(x))``, ``y = N(h + FFN(h) + x)``; no final norm::

        x ──┬──────────┐                 ┌─────────────────────────┐
            │          │                 │                         │
            ├── Attn ─(+)── N ── h ──┬── FFN ──(+)──(+)── N ──> y
            └────────────────────────────────────────┘

    Takase et al. 2022, B2T connection (arXiv:2206.00330). For the decoder of an
    encoder-decoder the cross-attention sublayer is a Post-LN step between the two, and the
    layer input still joins before the last norm (the paper's rule, extended to three sublayers).
    Versus pre_ln: keeps Post-LN's normalized stream, but the skip past the whole layer keeps
    gradients from vanishing in deep stacks.
    """

    name = "b2t"
    equation = "h = N(x + Attn(x)); y = N(h + FFN(h) + x)"
    source = "Takase et al. 2022 B2T (arXiv:2206.00330)"
    final_norm = False

    def setup_layer(self, layer: Layer) -> None:
        add_norms(self, layer)

    def layer(self, layer: Layer, x: Tensor, ctx: Context) -> Tensor:
        h = x
        for s in layer.sublayers[:-1]:  # attn (and cross): Post-LN steps
            h = layer.tap(s)(layer.norm(s)(h + layer.branch(s, ctx)(h)))
        f = layer.branch("mlp", ctx)
        return layer.tap("mlp")(layer.norm("mlp")(h + f(h) + x))  # type: ignore[no-any-return]
