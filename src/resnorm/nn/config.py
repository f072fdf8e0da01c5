"""`ModelConfig`: every architectural choice of a resnorm model, validated, JSON-serializable."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from resnorm.errors import ConfigError, choice_error
from resnorm.typed import from_mapping, to_dict

KINDS = ("decoder", "encoder", "encoder_decoder")
MLPS = ("gelu", "gelu_tanh", "relu", "swiglu", "geglu")
POSITIONALS = ("learned", "rope", "none")
QK_NORMS = ("none", "head", "full")
ATTENTIONS = ("sdpa", "eager")

Kind = Literal["decoder", "encoder", "encoder_decoder"]


@dataclass(frozen=True)
class ModelConfig:
    """A transformer: its shape, its sublayers and, above all, its residual/norm topology.

    Attributes:
        kind: ``decoder`` (causal LM), ``encoder`` (bidirectional, padding mask) or
            ``encoder_decoder`` (encoder + causal decoder with cross-attention).
        vocab_size: tokens in the vocabulary.
        d_model: width of the residual stream.
        n_layers: layers of the (encoder, for ``encoder_decoder``) stack; a layer is attention
            (+ cross-attention) + feed-forward.
        n_heads: attention heads; ``n_kv_heads`` < ``n_heads`` gives grouped-query attention.
        n_decoder_layers: decoder layers of an ``encoder_decoder`` model (default ``n_layers``).
        head_dim: per-head width (default ``d_model // n_heads``).
        d_ff: hidden width of the feed-forward sublayer (default ``4 * d_model``).
        mlp: ``gelu``, ``gelu_tanh`` (GPT-2's approximation), ``relu``, ``swiglu``, ``geglu``.
        positional: ``learned``, ``rope`` or ``none``; ``rope_theta`` its base.
        norm: a name from the norm registry (``resnorm norms``); ``norm_eps``, ``norm_bias``.
        topology: a name from the topology registry (``resnorm topologies``);
            ``topology_params`` its own typed parameters.
        init: an init scheme (``normal``, ``xavier``, ``gpt2``, ``depth_scaled``) with
            ``init_std``; the topology's own init applies on top.
        qk_norm: normalize queries and keys per head (``head``), over all heads (``full``, OLMo-2)
            or not (``none``).
        attn_bias, mlp_bias: biases in the attention and feed-forward projections.
        attn_scale: softmax temperature (default ``head_dim ** -0.5``).
        attn_softcap, logit_softcap: ``c * tanh(z / c)`` on attention scores / output logits.
        sliding_window, sliding_window_pattern: local attention of that window on every
            ``pattern``-th layer, starting at the first (Gemma-2: pattern 2).
        embed_scale: multiply token embeddings by ``sqrt(d_model)``.
        embed_norm: normalize the embedding output (default: the topology decides; Peri-LN does).
        dropout: on embeddings, attention probabilities and every branch output.
        tie_embeddings: the output head shares the token embedding matrix.
        max_seq_len: longest sequence (size of the learned position table, RoPE cache).
        attention: ``sdpa`` (fused) or ``eager`` (explicit softmax: the test oracle, exposes
            attention probabilities to hooks).
    """

    kind: Kind = "decoder"
    vocab_size: int = 256
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None
    n_decoder_layers: int | None = None
    head_dim: int | None = None
    d_ff: int | None = None
    mlp: str = "gelu"
    positional: str = "learned"
    rope_theta: float = 10000.0
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    norm_bias: bool = True
    topology: str = "pre_ln"
    topology_params: Mapping[str, Any] = field(default_factory=dict)
    init: str = "normal"
    init_std: float = 0.02
    qk_norm: str = "none"
    attn_bias: bool = False
    mlp_bias: bool = False
    attn_scale: float | None = None
    attn_softcap: float | None = None
    logit_softcap: float | None = None
    sliding_window: int | None = None
    sliding_window_pattern: int = 1
    embed_scale: bool = False
    embed_norm: bool | None = None
    dropout: float = 0.0
    tie_embeddings: bool = True
    max_seq_len: int = 256
    attention: str = "sdpa"

    def __post_init__(self) -> None:
        # Local imports: the registries import this module.
        from resnorm.nn.init import INITS
        from resnorm.nn.norms import NORMS
        from resnorm.nn.topologies import TOPOLOGIES

        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_seq_len"):
            _positive(name, getattr(self, name))
        for name in ("n_kv_heads", "n_decoder_layers", "head_dim", "d_ff", "sliding_window"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        _positive("sliding_window_pattern", self.sliding_window_pattern)
        for name, choices in (
            ("kind", KINDS),
            ("mlp", MLPS),
            ("positional", POSITIONALS),
            ("qk_norm", QK_NORMS),
            ("attention", ATTENTIONS),
        ):
            if getattr(self, name) not in choices:
                raise choice_error(f"model.{name}", getattr(self, name), choices)
        NORMS.get(self.norm, "model.norm")
        INITS.get(self.init, "model.init")
        topology = TOPOLOGIES.get(self.topology, "model.topology")
        if self.head_dim is None and self.d_model % self.n_heads:
            raise ConfigError(
                "model.d_model",
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                "change one of them or set head_dim",
            )
        if self.n_heads % self.n_kv_heads_:
            raise ConfigError(
                "model.n_kv_heads",
                f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}",
            )
        if self.positional == "rope" and self.head_dim_ % 2:
            raise ConfigError(
                "model.head_dim", f"RoPE needs an even head_dim, got {self.head_dim_}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("model.dropout", f"must be in [0, 1), got {self.dropout}")
        for name in ("norm_eps", "init_std", "rope_theta"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"model.{name}", f"must be > 0, got {getattr(self, name)}")
        for name in ("attn_scale", "attn_softcap", "logit_softcap"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"model.{name}", f"must be > 0 or unset, got {value}")
        if self.n_decoder_layers is not None and self.kind != "encoder_decoder":
            raise ConfigError("model.n_decoder_layers", "only an encoder_decoder model has one")
        # Typed, validated topology parameters (unknown keys list the valid ones).
        object.__setattr__(self, "topology_params", dict(self.topology_params))
        topology.parse_params(self)

    @property
    def n_kv_heads_(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_dim_(self) -> int:
        return self.head_dim or self.d_model // self.n_heads

    @property
    def d_ff_(self) -> int:
        return self.d_ff or 4 * self.d_model

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)  # type: ignore[no-any-return]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], field: str = "model") -> ModelConfig:
        """Build from user input; unknown keys and wrong types name their field."""
        return from_mapping(cls, data, field)


def _positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"model.{name}", f"must be a positive integer, got {value}")
