"""The Llama family -> resnorm decoders: Llama (``pre_ln``), Gemma-2 (``sandwich_ln``) and
OLMo-2 (``res_post_ln`` + full QK-norm).

All three are RMSNorm + gated MLP + RoPE (half-split layout, as resnorm's ``Rotary``) with
grouped-query attention and the same tensor names, ``model.layers.{i}.self_attn.q_proj`` etc.;
they differ in where the norms sit:

* Llama: ``input_layernorm`` -> ``norm_attn``, ``post_attention_layernorm`` -> ``norm_mlp``
  (both *input* norms despite the name). Touvron et al. 2023 (arXiv:2302.13971).
* Gemma-2: ``input_layernorm``/``post_attention_layernorm`` -> ``norm_attn``/``post_norm_attn``,
  ``pre_feedforward_layernorm``/``post_feedforward_layernorm`` -> ``norm_mlp``/``post_norm_mlp``.
  Its RMSNorm computes ``x * rsqrt(mean(x^2) + eps) * (1 + w)`` in fp32, so resnorm's gain is
  ``w + 1``. Also: embeddings times ``sqrt(d_model)``, softmax scale
  ``query_pre_attn_scalar ** -0.5``, tanh soft-capping of attention scores and logits, and
  sliding-window attention on every other layer starting at the first. Gemma Team 2024
  (arXiv:2408.00118).
* OLMo-2: ``post_attention_layernorm``/``post_feedforward_layernorm`` -> ``norm_attn``/``norm_mlp``
  on the branch outputs, and RMSNorm on the whole query/key projections before the head split
  (``qk_norm="full"``). OLMo et al. 2024 (arXiv:2501.00656).

References: ``transformers/models/{llama,gemma2,olmo2}/modeling_*.py``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from resnorm.interop.hf_common import (
    ConfigFn,
    Converter,
    HFConfig,
    Tensors,
    WeightsFn,
    linear,
    lm_head,
    register,
    tied,
)

LAYER_TYPES = ("sliding_attention", "full_attention")
# Rotary-frequency buffers that checkpoints of older transformers versions carry.
STALE_ROPE = ("layers.*.self_attn.rotary_emb.inv_freq", "rotary_emb.inv_freq")


def shared_config(hf: HFConfig, t: Tensors, has_head: bool, tie_default: bool) -> dict[str, Any]:
    """What the three have in common: sizes, GQA, head_dim, RoPE, RMSNorm, attention biases."""
    d, n_heads = hf.require("hidden_size"), hf.require("num_attention_heads")
    return {
        "kind": "decoder",
        "vocab_size": hf.require("vocab_size"),
        "d_model": d,
        "n_layers": hf.require("num_hidden_layers"),
        "n_heads": n_heads,
        "n_kv_heads": hf.optional_int("num_key_value_heads", None),
        "head_dim": hf.optional_int("head_dim", None) or d // n_heads,
        "d_ff": hf.require("intermediate_size"),
        "positional": "rope",
        "rope_theta": hf.rope_theta(),
        "norm": "rmsnorm",
        "attn_bias": hf.flag("attention_bias", False),
        "tie_embeddings": tied(hf, t, tie_default, has_head),
    }


def llama_config(hf: HFConfig, t: Tensors, has_head: bool) -> dict[str, Any]:
    return {
        **shared_config(hf, t, has_head, tie_default=False),
        "mlp": hf.activation("hidden_act", "silu", gated=True),
        "mlp_bias": hf.flag("mlp_bias", False),
        "norm_eps": hf.number("rms_norm_eps", 1e-6),
        "topology": "pre_ln",
        "max_seq_len": hf.integer("max_position_embeddings", 2048),
    }


def sliding_layout(hf: HFConfig, n_layers: int) -> tuple[int | None, int]:
    """``(sliding_window, sliding_window_pattern)`` from Gemma-2's ``layer_types``.

    resnorm makes layer i local iff ``i % pattern == 0``; HF's default ``layer_types`` (layer i
    sliding iff i is even) is pattern 2. Any other layout that no pattern reproduces raises.
    """
    types = hf.get("layer_types")
    if types is None:
        types = [LAYER_TYPES[i % 2] for i in range(n_layers)]
    if not isinstance(types, list) or len(types) != n_layers or not set(types) <= set(LAYER_TYPES):
        raise hf.error(
            "layer_types", f"expected {n_layers} entries from {LAYER_TYPES}, got {types!r}"
        )
    local = [kind == "sliding_attention" for kind in types]
    if not any(local):
        return None, 1
    window = hf.integer("sliding_window", 4096)
    for pattern in range(1, n_layers + 1):
        if all(is_local == (i % pattern == 0) for i, is_local in enumerate(local)):
            return window, pattern
    raise hf.error(
        "layer_types",
        f"{types!r} is not 'sliding_attention on every k-th layer from the first' "
        "(resnorm's sliding_window_pattern)",
    )


def gemma2_config(hf: HFConfig, t: Tensors, has_head: bool) -> dict[str, Any]:
    hf.expect("use_bidirectional_attention", (None, False), None, "bidirectional attention")
    shared = shared_config(hf, t, has_head, tie_default=True)
    shared["n_kv_heads"] = hf.integer("num_key_value_heads", 4)
    shared["head_dim"] = hf.integer("head_dim", 256)
    window, pattern = sliding_layout(hf, shared["n_layers"])
    scalar = hf.number("query_pre_attn_scalar", 256)
    if scalar is None:
        raise hf.error("query_pre_attn_scalar", "must be a number (the softmax scale is its -1/2)")
    return {
        **shared,
        "mlp": hf.activation(
            "hidden_activation", "gelu_pytorch_tanh", gated=True, fallback="hidden_act"
        ),
        "norm_eps": hf.number("rms_norm_eps", 1e-6),
        "topology": "sandwich_ln",
        "embed_scale": True,
        "attn_scale": scalar**-0.5,
        "attn_softcap": hf.number("attn_logit_softcapping", 50.0),
        "logit_softcap": hf.number("final_logit_softcapping", 30.0),
        "sliding_window": window,
        "sliding_window_pattern": pattern,
        "max_seq_len": hf.integer("max_position_embeddings", 8192),
    }


def olmo2_config(hf: HFConfig, t: Tensors, has_head: bool) -> dict[str, Any]:
    return {
        **shared_config(hf, t, has_head, tie_default=False),
        "mlp": hf.activation("hidden_act", "silu", gated=True),
        "norm_eps": hf.number("rms_norm_eps", 1e-5),
        "topology": "res_post_ln",
        "qk_norm": "full",
        "max_seq_len": hf.integer("max_position_embeddings", 2048),
    }


def shared_weights(
    t: Tensors, cfg: dict[str, Any], norms: dict[str, str], gain_offset: float = 0.0
) -> dict[str, Tensor]:
    """Embeddings, attention, MLP, norms, head. ``norms`` maps each per-layer HF norm to its
    resnorm name; ``model.norm`` is the final norm. ``gain_offset`` is added to every norm gain."""

    def gain(name: str) -> Tensor:
        weight = t.take(f"{name}.weight")
        return weight.float() + gain_offset if gain_offset else weight

    out = {"embed.tok.weight": t.take("embed_tokens.weight")}
    bias, mlp_bias = cfg["attn_bias"], cfg.get("mlp_bias", False)
    for i in range(cfg["n_layers"]):
        src, dst = f"layers.{i}", f"decoder.layers.{i}"
        for name in "qkvo":
            linear(out, f"{dst}.attn.{name}_proj", t, f"{src}.self_attn.{name}_proj", bias=bias)
        if cfg.get("qk_norm") == "full":
            out[f"{dst}.attn.q_norm.weight"] = gain(f"{src}.self_attn.q_norm")
            out[f"{dst}.attn.k_norm.weight"] = gain(f"{src}.self_attn.k_norm")
        for name in ("gate", "up", "down"):
            linear(out, f"{dst}.mlp.{name}", t, f"{src}.mlp.{name}_proj", bias=mlp_bias)
        for hf_name, name in norms.items():
            out[f"{dst}.{name}.weight"] = gain(f"{src}.{hf_name}")
    out["decoder.final_norm.weight"] = gain("norm")
    lm_head(out, cfg["tie_embeddings"], t)
    return out


def llama_weights(t: Tensors, cfg: dict[str, Any]) -> dict[str, Tensor]:
    norms = {"input_layernorm": "norm_attn", "post_attention_layernorm": "norm_mlp"}
    return shared_weights(t, cfg, norms)


def gemma2_weights(t: Tensors, cfg: dict[str, Any]) -> dict[str, Tensor]:
    norms = {
        "input_layernorm": "norm_attn",
        "post_attention_layernorm": "post_norm_attn",
        "pre_feedforward_layernorm": "norm_mlp",
        "post_feedforward_layernorm": "post_norm_mlp",
    }
    return shared_weights(t, cfg, norms, gain_offset=1.0)  # Gemma2RMSNorm scales by (1 + w)


def olmo2_weights(t: Tensors, cfg: dict[str, Any]) -> dict[str, Tensor]:
    norms = {"post_attention_layernorm": "norm_attn", "post_feedforward_layernorm": "norm_mlp"}
    return shared_weights(t, cfg, norms)


def family(model_type: str, cls: str, config: ConfigFn, weights: WeightsFn) -> Converter:
    """Register the converter of ``{cls}ForCausalLM`` and ``{cls}Model`` (prefix ``model.``)."""
    return register(
        Converter(
            model_type=model_type,
            architectures={f"{cls}ForCausalLM": True, f"{cls}Model": False},
            prefix="model",
            config=config,
            weights=weights,
            ignore=STALE_ROPE,
        )
    )


LLAMA = family("llama", "Llama", llama_config, llama_weights)
GEMMA2 = family("gemma2", "Gemma2", gemma2_config, gemma2_weights)
OLMO2 = family("olmo2", "Olmo2", olmo2_config, olmo2_weights)
