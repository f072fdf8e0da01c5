"""`ModelConfig`: every architectural choice of a resnorm model, validated, JSON-serializable."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from resnorm.errors import ConfigError, choice_error
from resnorm.memory import fmt_bytes
from resnorm.typed import describe_int, from_mapping, to_dict

KINDS = ("decoder", "encoder", "encoder_decoder")
MLPS = ("gelu", "gelu_tanh", "relu", "swiglu", "geglu")
POSITIONALS = ("learned", "rope", "none")
QK_NORMS = ("none", "head", "full")
ATTENTIONS = ("sdpa", "eager")

Kind = Literal["decoder", "encoder", "encoder_decoder"]

#: Upper bounds of the sizes: far above published models (Llama 3.1 405B: d_model 16384, 126
#: layers, d_ff 53248, 128k context; DeepNet: 1,000 layers; vocabularies of 256k), far below the
#: sizes whose construction hangs or overflows. A size past them is a typo, refused at once.
MAX_SIZE = {
    "vocab_size": 2**24,
    "d_model": 2**16,
    "n_layers": 10_000,
    "n_decoder_layers": 10_000,
    "n_heads": 2**12,
    "n_kv_heads": 2**12,
    "head_dim": 2**12,
    "d_ff": 2**20,
    "max_seq_len": 2**24,
    "sliding_window": 2**24,
    "sliding_window_pattern": 10_000,
}
#: The most parameters a model may have, on any machine: 2**40 (1.1e12; 4 TiB in fp32). Whether
#: a model fits *this* machine is checked where it is trained or probed (`resnorm.config`).
MAX_PARAMS = 2**40


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
            _size(name, getattr(self, name))
        for name in ("n_kv_heads", "n_decoder_layers", "head_dim", "d_ff", "sliding_window"):
            if getattr(self, name) is not None:
                _size(name, getattr(self, name))
        _size("sliding_window_pattern", self.sliding_window_pattern)
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
            if not 0 < getattr(self, name) < math.inf:
                raise ConfigError(
                    f"model.{name}", f"must be a finite number > 0, got {getattr(self, name)}"
                )
        for name in ("attn_scale", "attn_softcap", "logit_softcap"):
            value = getattr(self, name)
            if value is not None and not 0 < value < math.inf:
                raise ConfigError(
                    f"model.{name}", f"must be a finite number > 0 or unset, got {value}"
                )
        if self.n_decoder_layers is not None and self.kind != "encoder_decoder":
            raise ConfigError("model.n_decoder_layers", "only an encoder_decoder model has one")
        self._check_params()
        # Typed, validated topology parameters (unknown keys list the valid ones).
        object.__setattr__(self, "topology_params", dict(self.topology_params))
        topology.parse_params(self)

    def _check_params(self) -> None:
        terms = self.param_terms()
        total = sum(terms.values())
        if total > MAX_PARAMS:
            field = max(terms, key=terms.__getitem__)
            raise ConfigError(
                f"model.{field}",
                f"the model would have about {total:.3g} parameters "
                f"({fmt_bytes(4 * total)} in fp32), over the limit of {MAX_PARAMS:.3g} "
                f"(d_model={self.d_model}, n_layers={self.n_layers}, d_ff={self.d_ff_}, "
                f"vocab_size={self.vocab_size}, max_seq_len={self.max_seq_len}); {field} "
                "contributes the most",
            )

    @property
    def stack_depths(self) -> tuple[int, int]:
        """(encoder layers, decoder layers); 0 for a stack the model does not have."""
        if self.kind == "decoder":
            return 0, self.n_layers
        if self.kind == "encoder":
            return self.n_layers, 0
        return self.n_layers, self.n_decoder_layers or self.n_layers

    def param_terms(self) -> dict[str, int]:
        """About how many parameters the layers, the token tables (embedding and head) and the
        position table hold, keyed by the size field that scales each; norms and topology
        scalars (a few vectors per layer) are left out."""
        d, dq, dkv = self.d_model, self.n_heads * self.head_dim_, self.n_kv_heads_ * self.head_dim_
        attn = 2 * d * (dq + dkv)  # q, o: d x dq; k, v: d x dkv
        mlp = (3 if self.mlp in ("swiglu", "geglu") else 2) * d * self.d_ff_
        enc, dec = self.stack_depths
        cross = dec * attn if self.kind == "encoder_decoder" else 0
        return {
            "n_layers": (enc + dec) * (attn + mlp) + cross,
            "vocab_size": self.vocab_size * d * (1 if self.tie_embeddings else 2),
            "max_seq_len": self.max_seq_len * d if self.positional == "learned" else 0,
        }

    def param_count(self) -> int:
        """About how many parameters the model has (see `param_terms`)."""
        return sum(self.param_terms().values())

    def buffer_bytes(self) -> int:
        """Bytes of the non-parameter tensors built with the model: RoPE's cos/sin tables."""
        return 2 * 4 * self.max_seq_len * self.head_dim_ if self.positional == "rope" else 0

    def activation_floats(self, batch_size: int, seq_len: int) -> int:
        """A lower bound on the numbers one forward and backward pass over a batch of
        ``batch_size`` x ``seq_len`` tokens keeps at once: each layer's input and feed-forward
        hidden activations (saved for the backward pass), the logits and their gradient, and,
        on the ``eager`` attention path, every layer's attention probabilities."""
        enc, dec = self.stack_depths
        tokens = batch_size * seq_len
        total = tokens * ((enc + dec) * (self.d_model + self.d_ff_) + 2 * self.vocab_size)
        if self.attention == "eager":
            total += (enc + dec) * batch_size * self.n_heads * seq_len**2
        return total

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


def _size(name: str, value: int) -> None:
    bound = MAX_SIZE[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= bound:
        shown = describe_int(value) if isinstance(value, int) else repr(value)
        raise ConfigError(f"model.{name}", f"must be an integer in [1, {bound}], got {shown}")
