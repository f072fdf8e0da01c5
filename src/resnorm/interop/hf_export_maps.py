"""What each Hugging Face family's export holds: its ``config.json`` fields and its tensors under
the names ``transformers`` expects, from a resnorm config and state dict (the inverse of the
``hf_gpt2``, ``hf_bert`` and ``hf_llama`` loaders). Which family a model maps to, and the checks
that it computes the same thing, live in ``hf_export``."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from resnorm.nn.config import ModelConfig

# resnorm `mlp` -> the Hugging Face activation name that computes it (inverse of hf_common's).
PLAIN_ACT = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}
GATED_ACT = {"swiglu": "silu", "geglu": "gelu_pytorch_tanh"}
# GPT-1's own activation table: its "gelu" is the tanh approximation.
OPENAI_ACT = {"gelu_tanh": "gelu", "relu": "relu"}
NO_TOKENS = {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None}


class Taken:
    """The resnorm state dict, consumed by name, so that a tensor left unmapped is caught."""

    def __init__(self, state: dict[str, Tensor]) -> None:
        self.left = dict(state)
        first = next(iter(state.values()))
        self.dtype, self.device = first.dtype, first.device

    def __call__(self, name: str) -> Tensor:
        assert name in self.left, f"export bug: no resnorm tensor {name!r}"
        return self.left.pop(name).detach()

    def bias(self, module: str, size: int) -> Tensor:
        """``module.bias``, or zeros where resnorm has none: a zero bias computes what no bias
        does, so a bias-free resnorm model is exactly a GPT-2 or BERT with zero biases."""
        name = f"{module}.bias"
        return self(name) if name in self.left else self.zeros(size)

    def zeros(self, *size: int) -> Tensor:
        return torch.zeros(*size, dtype=self.dtype, device=self.device)

    def finish(self, tied: bool) -> None:
        if tied:
            self.left.pop("lm_head.weight", None)  # the token embeddings, written once
        assert not self.left, f"export bug: tensors not mapped: {sorted(self.left)}"


def default_scale(cfg: ModelConfig) -> bool:
    return cfg.attn_scale is None or math.isclose(cfg.attn_scale, cfg.head_dim_**-0.5)


def scale_of(cfg: ModelConfig) -> float:
    return cfg.attn_scale if cfg.attn_scale is not None else cfg.head_dim_**-0.5


def query_pre_attn_scalar(cfg: ModelConfig) -> int:
    """Gemma-2's softmax scale is ``query_pre_attn_scalar ** -0.5``, an integer in its config."""
    return max(1, round(scale_of(cfg) ** -2))


def gpt2_config(cfg: ModelConfig) -> dict[str, Any]:
    return {
        "vocab_size": cfg.vocab_size,
        "n_embd": cfg.d_model,
        "n_layer": cfg.n_layers,
        "n_head": cfg.n_heads,
        "n_inner": cfg.d_ff_,
        "n_positions": cfg.max_seq_len,
        "activation_function": PLAIN_ACT[cfg.mlp],
        "layer_norm_epsilon": cfg.norm_eps,
        "scale_attn_weights": default_scale(cfg),
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout,
        **NO_TOKENS,
    }


def gpt2_weights(t: Taken, cfg: ModelConfig) -> dict[str, Tensor]:
    out = {
        "transformer.wte.weight": t("embed.tok.weight"),
        "transformer.wpe.weight": t("embed.pos.weight"),
    }
    for i in range(cfg.n_layers):
        conv1d_layer(t, cfg, out, f"decoder.layers.{i}", f"transformer.h.{i}")
    out["transformer.ln_f.weight"] = t("decoder.final_norm.weight")
    out["transformer.ln_f.bias"] = t.bias("decoder.final_norm", cfg.d_model)
    return out


def conv1d_layer(t: Taken, cfg: ModelConfig, out: dict[str, Tensor], src: str, dst: str) -> None:
    """One GPT-2/GPT-1 block: ``Conv1D`` weights stored (in, out), the transpose of
    ``nn.Linear``'s, with q, k, v fused along the outputs in ``c_attn``."""
    qkv = [f"{src}.attn.{n}_proj" for n in "qkv"]
    out[f"{dst}.attn.c_attn.weight"] = torch.cat([t(f"{n}.weight") for n in qkv]).t()
    out[f"{dst}.attn.c_attn.bias"] = torch.cat([t.bias(n, cfg.d_model) for n in qkv])
    for hf_name, name in (
        ("attn.c_proj", "attn.o_proj"),
        ("mlp.c_fc", "mlp.up"),
        ("mlp.c_proj", "mlp.down"),
    ):
        weight = out[f"{dst}.{hf_name}.weight"] = t(f"{src}.{name}.weight").t()
        out[f"{dst}.{hf_name}.bias"] = t.bias(f"{src}.{name}", weight.shape[1])
    for hf_name, name in (("ln_1", "norm_attn"), ("ln_2", "norm_mlp")):
        out[f"{dst}.{hf_name}.weight"] = t(f"{src}.{name}.weight")
        out[f"{dst}.{hf_name}.bias"] = t.bias(f"{src}.{name}", cfg.d_model)


def openai_config(cfg: ModelConfig) -> dict[str, Any]:
    return {
        "vocab_size": cfg.vocab_size,
        "n_embd": cfg.d_model,
        "n_layer": cfg.n_layers,
        "n_head": cfg.n_heads,
        "n_positions": cfg.max_seq_len,
        "afn": OPENAI_ACT[cfg.mlp],
        "layer_norm_epsilon": cfg.norm_eps,
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout,
        **NO_TOKENS,
    }


def openai_weights(t: Taken, cfg: ModelConfig) -> dict[str, Tensor]:
    out = {
        "transformer.tokens_embed.weight": t("embed.tok.weight"),
        "transformer.positions_embed.weight": t("embed.pos.weight"),
    }
    for i in range(cfg.n_layers):
        conv1d_layer(t, cfg, out, f"decoder.layers.{i}", f"transformer.h.{i}")
    return out


def bert_config(cfg: ModelConfig) -> dict[str, Any]:
    return {
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "intermediate_size": cfg.d_ff_,
        "hidden_act": PLAIN_ACT[cfg.mlp],
        "max_position_embeddings": cfg.max_seq_len,
        "type_vocab_size": 2,
        "layer_norm_eps": cfg.norm_eps,
        "position_embedding_type": "absolute",
        "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": cfg.dropout,
        **NO_TOKENS,
    }


def bert_weights(t: Taken, cfg: ModelConfig) -> dict[str, Tensor]:
    tok, d = t("embed.tok.weight"), cfg.d_model
    out = {
        "embeddings.word_embeddings.weight": tok,
        "embeddings.position_embeddings.weight": t("embed.pos.weight"),
        # Zero segment embeddings: any token_type_ids give resnorm's output.
        "embeddings.token_type_embeddings.weight": t.zeros(2, d),
        # resnorm has no pooler; an identity one (pooler_output = tanh(h[:, 0])) leaves nothing
        # for transformers to initialize at random.
        "pooler.dense.weight": torch.eye(d, dtype=tok.dtype, device=tok.device),
        "pooler.dense.bias": t.zeros(d),
    }
    names = [("embeddings.LayerNorm", "encoder.embed_norm")]
    for i in range(cfg.n_layers):
        src, dst = f"encoder.layers.{i}", f"encoder.layer.{i}"
        names += [
            (f"{dst}.attention.self.query", f"{src}.attn.q_proj"),
            (f"{dst}.attention.self.key", f"{src}.attn.k_proj"),
            (f"{dst}.attention.self.value", f"{src}.attn.v_proj"),
            (f"{dst}.attention.output.dense", f"{src}.attn.o_proj"),
            (f"{dst}.attention.output.LayerNorm", f"{src}.norm_attn"),
            (f"{dst}.intermediate.dense", f"{src}.mlp.up"),
            (f"{dst}.output.dense", f"{src}.mlp.down"),
            (f"{dst}.output.LayerNorm", f"{src}.norm_mlp"),
        ]
    for hf_name, name in names:
        weight = out[f"{hf_name}.weight"] = t(f"{name}.weight")
        out[f"{hf_name}.bias"] = t.bias(name, weight.shape[0])
    return out


def llama_config(cfg: ModelConfig) -> dict[str, Any]:
    return {
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads_,
        "head_dim": cfg.head_dim_,
        "intermediate_size": cfg.d_ff_,
        "hidden_act": GATED_ACT[cfg.mlp],
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "attention_bias": cfg.attn_bias,
        "mlp_bias": cfg.mlp_bias,
        "attention_dropout": 0.0,
        **NO_TOKENS,
    }


def gemma2_config(cfg: ModelConfig) -> dict[str, Any]:
    out = llama_config(cfg)
    del out["mlp_bias"]
    window, pattern = cfg.sliding_window, cfg.sliding_window_pattern
    local = [window is not None and i % pattern == 0 for i in range(cfg.n_layers)]
    return {
        **out,
        "hidden_activation": out["hidden_act"],
        "query_pre_attn_scalar": query_pre_attn_scalar(cfg),
        "attn_logit_softcapping": cfg.attn_softcap,
        "final_logit_softcapping": cfg.logit_softcap,
        "sliding_window": window or cfg.max_seq_len,
        "layer_types": ["sliding_attention" if x else "full_attention" for x in local],
    }


def olmo2_config(cfg: ModelConfig) -> dict[str, Any]:
    out = llama_config(cfg)
    del out["mlp_bias"]
    return out


def rope_weights(
    t: Taken, cfg: ModelConfig, norms: dict[str, str], offset: float = 0.0
) -> dict[str, Tensor]:
    """``model.*`` tensors of the Llama family; ``norms`` maps resnorm -> HF per-layer norms,
    ``offset`` is subtracted from every norm gain (Gemma-2 stores ``w`` for ``1 + w``)."""

    def gain(name: str) -> Tensor:
        g = t(f"{name}.weight")
        return (g.float() - offset).to(g.dtype) if offset else g

    out = {"model.embed_tokens.weight": t("embed.tok.weight")}
    for i in range(cfg.n_layers):
        src, dst = f"decoder.layers.{i}", f"model.layers.{i}"
        for n in "qkvo":
            out[f"{dst}.self_attn.{n}_proj.weight"] = t(f"{src}.attn.{n}_proj.weight")
            if cfg.attn_bias:
                out[f"{dst}.self_attn.{n}_proj.bias"] = t(f"{src}.attn.{n}_proj.bias")
        if cfg.qk_norm == "full":
            for n in "qk":
                out[f"{dst}.self_attn.{n}_norm.weight"] = gain(f"{src}.attn.{n}_norm")
        for n in ("gate", "up", "down"):
            out[f"{dst}.mlp.{n}_proj.weight"] = t(f"{src}.mlp.{n}.weight")
            if cfg.mlp_bias:
                out[f"{dst}.mlp.{n}_proj.bias"] = t(f"{src}.mlp.{n}.bias")
        for name, hf_name in norms.items():
            out[f"{dst}.{hf_name}.weight"] = gain(f"{src}.{name}")
    out["model.norm.weight"] = gain("decoder.final_norm")
    return out


def llama_weights(t: Taken, cfg: ModelConfig) -> dict[str, Tensor]:
    norms = {"norm_attn": "input_layernorm", "norm_mlp": "post_attention_layernorm"}
    return rope_weights(t, cfg, norms)


def gemma2_weights(t: Taken, cfg: ModelConfig) -> dict[str, Tensor]:
    norms = {
        "norm_attn": "input_layernorm",
        "post_norm_attn": "post_attention_layernorm",
        "norm_mlp": "pre_feedforward_layernorm",
        "post_norm_mlp": "post_feedforward_layernorm",
    }
    return rope_weights(t, cfg, norms, offset=1.0)


def olmo2_weights(t: Taken, cfg: ModelConfig) -> dict[str, Tensor]:
    norms = {"norm_attn": "post_attention_layernorm", "norm_mlp": "post_feedforward_layernorm"}
    return rope_weights(t, cfg, norms)
