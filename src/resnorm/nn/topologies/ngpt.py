"""nGPT: the normalized Transformer, whose hidden states live on the unit hypersphere.

Loshchilov, Hsieh, Sun & Ginsburg 2024, nGPT: Normalized Transformer with Representation
Learning on the Hypersphere (arXiv:2410.01131), checked against NVIDIA's reference code
(github.com/NVIDIA/ngpt, ``model.py``). Section and equation numbers are the paper's.

Everything below keeps vectors that live in the d_model space at unit L2 norm:

* the stream: the embedding output is normalized, and every sublayer is the step (eqs. 10-11)
  ``h <- Norm(h + a (Norm(F(h)) - h))``; no final norm;
* attention (§2.3.2, eqs. 15-16): ``q <- Norm(q) s_qk``, ``k <- Norm(k) s_qk`` after RoPE, and
  the softmax scale is ``sqrt(d_k)`` instead of ``1/sqrt(d_k)``;
* the feed-forward (§2.4.2): ``u <- u s_u``, ``nu <- nu s_nu sqrt(d_model)`` with
  ``SwiGLU(u, nu) = u SiLU(nu)``;
* the logits (§2.1): ``z <- z s_z``;
* the weights (§2.6): every matrix is normalized along its embedding dimension at init and after
  every optimizer step (``normalize_ngpt_weights_``, run by ``Transformer.after_step``).

Every learned scale ``s`` (``a`` too) uses the paper's reparametrization (§2.5): the stored
parameter starts at ``s_scale`` and the effective value is ``param * (s_init / s_scale)``, so Adam
moves it at a rate set by ``s_scale``.

Where the reference code departs from the paper's equations we follow the equations: it uses
``|a|`` (here ``a`` may turn negative) and also multiplies ``u`` by ``sqrt(d_model)`` (a constant
factor that the ``Norm`` of the branch output removes, in values and in gradients).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from resnorm.errors import ConfigError
from resnorm.nn.attention import Attention
from resnorm.nn.config import ModelConfig
from resnorm.nn.context import Context
from resnorm.nn.init import stream_linears
from resnorm.nn.mlp import MLP
from resnorm.nn.norms import l2_normalize
from resnorm.nn.topologies.base import Branch, StackSpec, Topology, register

if TYPE_CHECKING:
    from resnorm.nn.model import Layer, Stack, Transformer


@dataclass(frozen=True)
class NGPTParams:
    """nGPT's scale factors: the value at init and the stored value at init (§2.5, §2.6).

    Attributes:
        alpha_init: the eigen learning rate ``a`` of every sublayer at init (paper: 0.05).
        alpha_scale: ``a``'s stored value at init (default ``1/sqrt(d_model)``).
        sqk_init, sqk_scale: ``s_qk`` at init (1) and stored (default ``1/sqrt(d_model)``).
        suv_init, suv_scale: ``s_u`` and ``s_v`` at init (1) and stored (1).
        sz_init, sz_scale: ``s_z`` at init (1) and stored (default ``1/sqrt(d_model)``).
    """

    alpha_init: float = 0.05
    alpha_scale: float | None = None
    sqk_init: float = 1.0
    sqk_scale: float | None = None
    suv_init: float = 1.0
    suv_scale: float = 1.0
    sz_init: float = 1.0
    sz_scale: float | None = None


class NGPTAttention(Attention):
    """Attention on the sphere: ``softmax(sqrt(d_k) (s_qk Norm(q)) . (s_qk Norm(k)))`` (eqs. 15-16).

    Per head the logit of query i and key j is ``sqrt(d_k) sum_c s_c^2 q_ic k_jc / (|q_i| |k_j|)``,
    a cosine when ``s_qk = 1``. ``s_qk`` has one entry per key/value head and channel, as the
    reference's ``n_heads * head_dim`` vector; with grouped-query attention the query heads of a
    group share their key head's scale. RoPE rotates q and k before the normalization, as in the
    reference (the norm does not change, but the per-channel ``s_qk`` applies after rotation).
    """

    def __init__(
        self, cfg: ModelConfig, *, cross: bool, local: bool, sqk_init: float, sqk_scale: float
    ) -> None:
        super().__init__(cfg, cross=cross, local=local)
        self.scale = math.sqrt(self.head_dim)  # multiplies the logits (§2.3.2)
        self.sqk_factor = sqk_init / sqk_scale
        self.s_qk = nn.Parameter(torch.full((self.n_kv_heads, self.head_dim), sqk_scale))

    def project(self, x: Tensor, ctx: Context) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = super().project(x, ctx)  # (B, H, T, Dh), (B, Hkv, S, Dh) x 2, rotated
        s_k = self.s_qk * self.sqk_factor  # (Hkv, Dh)
        s_q = s_k.repeat_interleave(self.n_heads // self.n_kv_heads, dim=0)  # (H, Dh)
        return l2_normalize(q) * s_q[:, None], l2_normalize(k) * s_k[:, None], v


class NGPTMLP(MLP):
    """Feed-forward with scaled inputs to the gate (§2.4.2).

    Gated (swiglu, geglu): ``down(act(s_v sqrt(d) gate(x)) * (s_u up(x)))``: ``gate`` is the
    paper's ``W_nu`` (the argument of the nonlinearity), ``up`` its ``W_u``. The ``sqrt(d_model)``
    undoes the normalization, which leaves ``gate(x)`` a vector of cosines in [-1, 1] where SiLU
    is nearly linear. Not gated (gelu, relu; an extension, the paper uses SwiGLU only): the
    pre-activation plays ``nu``'s role, so ``down(act(s_v sqrt(d) up(x)))`` and there is no ``s_u``.
    """

    def __init__(self, cfg: ModelConfig, *, suv_init: float, suv_scale: float) -> None:
        super().__init__(cfg)
        self.suv_factor = suv_init / suv_scale
        self.v_gain = math.sqrt(cfg.d_model)
        self.s_v = nn.Parameter(torch.full((cfg.d_ff_,), suv_scale))
        self.s_u = (
            nn.Parameter(torch.full((cfg.d_ff_,), suv_scale)) if self.gate is not None else None
        )

    def hidden(self, x: Tensor) -> Tensor:
        s_v = self.s_v * (self.suv_factor * self.v_gain)
        if self.gate is None or self.s_u is None:
            return self.act(self.up(x) * s_v)
        return self.act(self.gate(x) * s_v) * (self.up(x) * (self.s_u * self.suv_factor))


@register
class NGPT(Topology):
    """nGPT: every sublayer moves the unit-norm stream toward its normalized output.

    ``h <- Norm(h + a (Norm(F(h)) - h))`` (eqs. 10-11; ``Norm`` = L2 normalization, ``a`` a
    learnable per-channel "eigen learning rate", init 0.05), i.e. a per-channel interpolation
    between ``h`` and ``Norm(F(h))`` projected back onto the sphere::

        h ──┬────────────────── x (1 - a) ──(+)── Norm ──>
            └── F ── Norm ───── x a ─────────┘

    The embedding output is normalized; there is no final norm; q, k, the MLP gate and the logits
    are rescaled (``NGPTAttention``, ``NGPTMLP``, ``s_z``); every matrix and embedding table is
    renormalized along d_model at init and after each optimizer step. No LayerNorm or RMSNorm
    anywhere: ``model.norm`` is not used. The paper also drops weight decay and warmup (§2.6).

    Loshchilov et al. 2024, nGPT (arXiv:2410.01131). The paper defines a decoder only; here an
    encoder uses the same rule with bidirectional attention, and in an encoder-decoder the
    cross-attention is one more sublayer with its own ``a`` whose keys and values read the
    encoder output, itself on the sphere. With tied embeddings the one table serves as both
    ``E_input`` and ``E_output`` (the paper does not tie; both are normalized by rows anyway).
    A learned position table, which the paper does not use, is normalized by rows like the tokens.
    Versus pre_ln: norms are replaced by projections onto the sphere, of the stream, of q and k,
    and of the weights, so dot products are cosines and each layer's step size is learned.
    """

    name = "ngpt"
    equation = "h <- Norm(h + a (Norm(F(h)) - h)); unit-norm q, k, weights; a init 0.05"
    source = "Loshchilov et al. 2024 nGPT (arXiv:2410.01131)"
    family = "stream"
    Params = NGPTParams
    final_norm = False

    def __init__(self, cfg: ModelConfig, spec: StackSpec) -> None:
        super().__init__(cfg, spec)
        p, base = self.params, cfg.d_model**-0.5
        self.alpha_scale = base if p.alpha_scale is None else p.alpha_scale
        self.sqk_scale = base if p.sqk_scale is None else p.sqk_scale
        self.sz_scale = base if p.sz_scale is None else p.sz_scale

    @classmethod
    def check(cls, params: NGPTParams, cfg: ModelConfig) -> None:  # type: ignore[override]
        for f in fields(params):
            value = getattr(params, f.name)
            if value is not None and not value > 0:
                raise ConfigError(f"model.topology_params.{f.name}", f"must be > 0, got {value}")
        if cfg.qk_norm != "none":
            raise ConfigError(
                "model.qk_norm", "nGPT L2-normalizes q and k itself (scaled by s_qk); use 'none'"
            )
        if cfg.attn_scale is not None:
            raise ConfigError("model.attn_scale", "nGPT's softmax scale is sqrt(d_k); unset it")
        if cfg.embed_norm:
            raise ConfigError("model.embed_norm", "nGPT L2-normalizes the embeddings; unset it")

    # --- construction -----------------------------------------------------------------------
    def make_attention(self, layer_index: int, *, cross: bool, local: bool) -> Attention:
        return NGPTAttention(
            self.cfg,
            cross=cross,
            local=local,
            sqk_init=self.params.sqk_init,
            sqk_scale=self.sqk_scale,
        )

    def make_mlp(self, layer_index: int) -> nn.Module:
        return NGPTMLP(self.cfg, suv_init=self.params.suv_init, suv_scale=self.params.suv_scale)

    def setup_layer(self, layer: Layer) -> None:
        for s in layer.sublayers:
            alpha = nn.Parameter(torch.full((self.cfg.d_model,), self.alpha_scale))
            layer.register_parameter(f"alpha_{s}", alpha)

    def setup_stack(self, stack: Stack) -> None:
        if self.spec.role == "decoder" or self.spec.kind == "encoder":  # the stack with the head
            s_z = nn.Parameter(torch.full((self.cfg.vocab_size,), self.sz_scale))
            stack.register_parameter("s_z", s_z)

    # --- forward ----------------------------------------------------------------------------
    def alpha(self, layer: Layer, s: str) -> Tensor:
        """The effective eigen learning rate ``a`` (d_model,) of sublayer ``s`` of ``layer``."""
        return getattr(layer, f"alpha_{s}") * (self.params.alpha_init / self.alpha_scale)  # type: ignore[no-any-return]

    def sublayer(self, layer: Layer, s: str, x: Tensor, f: Branch) -> Tensor:
        return l2_normalize(x + self.alpha(layer, s) * (l2_normalize(f(x)) - x))

    def trunk(self, stack: Stack, x: Tensor, ctx: Context) -> Tensor:
        return super().trunk(stack, l2_normalize(x), ctx)

    def scale_logits(self, stack: Stack, logits: Tensor) -> Tensor:
        return logits * (getattr(stack, "s_z") * (self.params.sz_init / self.sz_scale))  # noqa: B009

    # --- init and training ------------------------------------------------------------------
    def init_(self, stack: Stack) -> None:
        normalize_ngpt_weights_(stack)

    def init_shared_(self, model: Transformer, stack: Stack) -> None:
        if stack is model.output_stack:
            _normalize_tables_(model)

    def after_step(self, stack: Stack) -> None:
        normalize_ngpt_weights_(stack)

    def after_step_shared(self, model: Transformer, stack: Stack) -> None:
        if stack is model.output_stack:
            _normalize_tables_(model)


@torch.no_grad()
def normalize_ngpt_weights_(model_or_stack: Transformer | Stack) -> None:
    """Normalize every matrix in place along its embedding (d_model) dimension (§2.6).

    ``q/k/v_proj`` (self and cross), ``mlp.up``, ``mlp.gate``: each row (input is d_model);
    ``o_proj``, ``mlp.down``: each column (output is d_model). Given a model, also the rows of the
    token (and learned position) embeddings and of the head. Biases are left alone.
    """
    from resnorm.nn.model import Transformer  # runtime import: model.py imports this package

    if isinstance(model_or_stack, Transformer):
        stacks = list(model_or_stack.stacks())
        _normalize_tables_(model_or_stack)
    else:
        stacks = [model_or_stack]
    for stack in stacks:
        for layer in stack.layers:
            # Linear weights are (out, in): a matrix that reads the stream has d_model as its
            # input (unit rows), one that writes it as its output (unit columns). The sublayers
            # declare which is which; an undeclared or missing linear raises.
            for dim, role in ((1, "READS"), (0, "WRITES")):
                for _, linear in stream_linears(layer, role):
                    linear.weight.copy_(l2_normalize(linear.weight, dim=dim))


@torch.no_grad()
def _normalize_tables_(model: Transformer) -> None:
    """Unit rows for the (V, d) and (T, d) tables: embeddings and the head (one if tied)."""
    tables = [model.embed.tok.weight, model.lm_head.weight]
    if model.embed.pos is not None:
        tables.append(model.embed.pos.weight)
    for weight in tables:
        weight.copy_(l2_normalize(weight, dim=1))
