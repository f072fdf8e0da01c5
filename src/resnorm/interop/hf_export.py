"""The inverse of ``from_hf``: which Hugging Face architecture computes what a resnorm model
computes, and the checks that it computes the same thing (the mapping itself: ``hf_export_maps``).

Six families, each the exact inverse of its loader (``hf_gpt2``, ``hf_openai``, ``hf_bert``,
``hf_llama``):

* ``pre_ln`` decoder, learned positions -> GPT-2 (``GPT2LMHeadModel``): LayerNorm, a plain
  GELU/tanh-GELU/ReLU MLP, fused ``c_attn`` stored as ``Conv1D`` (in, out); biases resnorm
  lacks are written as zeros (the same function), as for BERT.
* ``pre_ln`` decoder, RoPE -> Llama (``LlamaForCausalLM``): RMSNorm, gated MLP, GQA.
* ``sandwich_ln`` decoder -> Gemma-2 (``Gemma2ForCausalLM``): its norms scale by ``1 + w``, so
  the stored weight is the resnorm gain minus 1; embeddings times ``sqrt(d_model)``.
* ``res_post_ln`` decoder with ``qk_norm="full"`` -> OLMo-2 (``Olmo2ForCausalLM``).
* ``post_ln`` decoder -> GPT-1 (``OpenAIGPTLMHeadModel``): GPT-2's layers with the norm after
  the add and no final norm; MLP width ``4 * d_model``.
* ``post_ln`` encoder with an embedding norm -> BERT (``BertModel``, no head: BERT's MLM head is
  ``decoder(LayerNorm(gelu(dense(h)))) + bias``, which a resnorm head is not).

`family_for` raises a `ConfigError` naming the first model field whose value the family's
architecture does not compute (another norm, a bias it lacks, a soft-cap it has not, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from resnorm.errors import ConfigError
from resnorm.interop.hf_export_maps import (
    GATED_ACT,
    OPENAI_ACT,
    PLAIN_ACT,
    Taken,
    bert_config,
    bert_weights,
    default_scale,
    gemma2_config,
    gemma2_weights,
    gpt2_config,
    gpt2_weights,
    llama_config,
    llama_weights,
    olmo2_config,
    olmo2_weights,
    openai_config,
    openai_weights,
    query_pre_attn_scalar,
    scale_of,
)
from resnorm.nn.config import ModelConfig

ConfigFn = Callable[[ModelConfig], dict[str, Any]]
WeightsFn = Callable[[Taken, ModelConfig], dict[str, Tensor]]


@dataclass(frozen=True)
class Family:
    """One Hugging Face architecture resnorm exports to.

    Attributes:
        name: the ``model_type``.
        architecture: the class written in ``architectures``.
        auto_class: the ``transformers`` Auto class that loads it.
        config: ``ModelConfig -> config.json`` fields (after `check` passed).
        weights: ``(resnorm tensors, cfg) -> HF state dict``.
        check: raises a ConfigError naming the field HF would compute differently.
    """

    name: str
    architecture: str
    auto_class: str
    config: ConfigFn
    weights: WeightsFn
    check: Callable[[ModelConfig], None]


def need(cfg: ModelConfig, field: str, ok: bool, family: str, expected: str) -> None:
    """Raise a ConfigError on ``model.<field>`` unless ``ok``."""
    if not ok:
        raise ConfigError(
            f"model.{field}",
            f"{getattr(cfg, field)!r}, but {family} computes {expected}",
        )


def check_common(cfg: ModelConfig, family: str, *, rope: bool, embed_norm: bool) -> None:
    """Fields every family fixes: positions, no extra topology parameters, the embedding norm."""
    need(cfg, "topology_params", not cfg.topology_params, family, "no topology parameters")
    positional = "rope" if rope else "learned"
    need(cfg, "positional", cfg.positional == positional, family, f"{positional!r} positions")
    need(
        cfg,
        "embed_norm",
        bool(cfg.embed_norm) == embed_norm,
        family,
        "a norm on the embeddings" if embed_norm else "no norm on the embeddings",
    )


def check_absent(cfg: ModelConfig, family: str, *fields: str) -> None:
    """Features the family does not have: each field must be unset (None/False/"none")."""
    for field in fields:
        need(cfg, field, getattr(cfg, field) in (None, False, "none"), family, f"no {field}")


def check_gpt2_like(cfg: ModelConfig, family: str) -> None:
    """GPT-2 and BERT: LayerNorm, a plain MLP, multi-head attention. Their biases are written as
    zeros where resnorm has none (``attn_bias``, ``mlp_bias``, ``norm_bias`` false)."""
    need(cfg, "norm", cfg.norm == "layernorm", family, "'layernorm'")
    need(cfg, "mlp", cfg.mlp in PLAIN_ACT, family, f"a plain MLP, one of {sorted(PLAIN_ACT)}")
    need(cfg, "n_kv_heads", cfg.n_kv_heads_ == cfg.n_heads, family, "n_kv_heads = n_heads")
    need(
        cfg,
        "head_dim",
        cfg.head_dim_ * cfg.n_heads == cfg.d_model,
        family,
        "head_dim = d_model / n_heads",
    )
    check_absent(
        cfg, family, "qk_norm", "attn_softcap", "logit_softcap", "sliding_window", "embed_scale"
    )


def check_rms_gated(cfg: ModelConfig, family: str) -> None:
    need(cfg, "norm", cfg.norm == "rmsnorm", family, "'rmsnorm'")
    need(cfg, "mlp", cfg.mlp in GATED_ACT, family, f"a gated MLP, one of {sorted(GATED_ACT)}")


# --- GPT-2 -------------------------------------------------------------------------------------
def gpt2_check(cfg: ModelConfig) -> None:
    check_common(cfg, "GPT-2", rope=False, embed_norm=False)
    check_gpt2_like(cfg, "GPT-2")
    need(
        cfg,
        "attn_scale",
        default_scale(cfg) or cfg.attn_scale == 1.0,
        "GPT-2",
        "head_dim ** -0.5 or 1.0 (scale_attn_weights)",
    )


def openai_check(cfg: ModelConfig) -> None:
    check_common(cfg, "GPT-1", rope=False, embed_norm=False)
    check_gpt2_like(cfg, "GPT-1")
    need(cfg, "mlp", cfg.mlp in OPENAI_ACT, "GPT-1", f"one of {sorted(OPENAI_ACT)}")
    need(cfg, "d_ff", cfg.d_ff_ == 4 * cfg.d_model, "GPT-1", "d_ff = 4 * d_model")
    need(cfg, "attn_scale", default_scale(cfg), "GPT-1", "head_dim ** -0.5")


# --- BERT --------------------------------------------------------------------------------------
def bert_check(cfg: ModelConfig) -> None:
    check_common(cfg, "BERT", rope=False, embed_norm=True)
    check_gpt2_like(cfg, "BERT")
    need(cfg, "attn_scale", default_scale(cfg), "BERT", "head_dim ** -0.5")
    need(
        cfg,
        "tie_embeddings",
        cfg.tie_embeddings,
        "BERT",
        "no separate output matrix "
        "(BertModel has no head; BertForMaskedLM's is a transform plus a bias)",
    )


# --- Llama, Gemma-2, OLMo-2 --------------------------------------------------------------------
def llama_check(cfg: ModelConfig) -> None:
    check_common(cfg, "Llama", rope=True, embed_norm=False)
    check_rms_gated(cfg, "Llama")
    need(cfg, "attn_scale", default_scale(cfg), "Llama", "head_dim ** -0.5")
    check_absent(
        cfg, "Llama", "qk_norm", "attn_softcap", "logit_softcap", "sliding_window", "embed_scale"
    )


def gemma2_check(cfg: ModelConfig) -> None:
    check_common(cfg, "Gemma-2", rope=True, embed_norm=False)
    check_rms_gated(cfg, "Gemma-2")
    need(cfg, "embed_scale", cfg.embed_scale, "Gemma-2", "embeddings times sqrt(d_model)")
    check_absent(cfg, "Gemma-2", "mlp_bias", "qk_norm")
    need(
        cfg,
        "attn_scale",
        math.isclose(query_pre_attn_scalar(cfg) ** -0.5, scale_of(cfg)),
        "Gemma-2",
        "query_pre_attn_scalar ** -0.5 with an integer query_pre_attn_scalar",
    )


def olmo2_check(cfg: ModelConfig) -> None:
    check_common(cfg, "OLMo-2", rope=True, embed_norm=False)
    check_rms_gated(cfg, "OLMo-2")
    need(cfg, "qk_norm", cfg.qk_norm == "full", "OLMo-2", "'full' QK-norm")
    need(cfg, "attn_scale", default_scale(cfg), "OLMo-2", "head_dim ** -0.5")
    check_absent(
        cfg, "OLMo-2", "mlp_bias", "attn_softcap", "logit_softcap", "sliding_window", "embed_scale"
    )


CAUSAL = "AutoModelForCausalLM"
GPT2 = Family("gpt2", "GPT2LMHeadModel", CAUSAL, gpt2_config, gpt2_weights, gpt2_check)
LLAMA = Family("llama", "LlamaForCausalLM", CAUSAL, llama_config, llama_weights, llama_check)
GEMMA2 = Family("gemma2", "Gemma2ForCausalLM", CAUSAL, gemma2_config, gemma2_weights, gemma2_check)
OLMO2 = Family("olmo2", "Olmo2ForCausalLM", CAUSAL, olmo2_config, olmo2_weights, olmo2_check)
GPT1 = Family(
    "openai-gpt", "OpenAIGPTLMHeadModel", CAUSAL, openai_config, openai_weights, openai_check
)
BERT = Family("bert", "BertModel", "AutoModel", bert_config, bert_weights, bert_check)
# (kind, topology) -> family; a pre_ln decoder picks GPT-2 or Llama by its positions.
FAMILIES = {
    ("encoder", "post_ln"): BERT,
    ("decoder", "post_ln"): GPT1,
    ("decoder", "sandwich_ln"): GEMMA2,
    ("decoder", "res_post_ln"): OLMO2,
}
EXPORTABLE = "pre_ln decoder (GPT-2, Llama), post_ln decoder (GPT-1), post_ln encoder (BERT), "
EXPORTABLE += "sandwich_ln decoder (Gemma-2), res_post_ln decoder (OLMo-2)"


def family_for(cfg: ModelConfig) -> Family:
    """The Hugging Face family that computes what ``cfg`` does.

    Raises:
        ConfigError: naming the first field (``model.topology``, ``model.norm``, ...) whose value
            no supported Hugging Face architecture computes.
    """
    if cfg.kind == "decoder" and cfg.topology == "pre_ln":
        family = LLAMA if cfg.positional == "rope" else GPT2
    elif (cfg.kind, cfg.topology) in FAMILIES:
        family = FAMILIES[(cfg.kind, cfg.topology)]
    else:
        field = "topology" if cfg.kind != "encoder_decoder" else "kind"
        raise ConfigError(
            f"model.{field}",
            f"a {cfg.topology} {cfg.kind} has no Hugging Face architecture that computes it "
            f"(exportable: {EXPORTABLE})",
        )
    family.check(cfg)
    return family


def hf_state(family: Family, state: dict[str, Tensor], cfg: ModelConfig) -> dict[str, Tensor]:
    """The model's tensors under ``family``'s names, each contiguous; a tied head written once
    (``transformers`` ties it on load), an untied one as ``lm_head.weight``."""
    t = Taken(state)
    out = family.weights(t, cfg)
    if family.auto_class == CAUSAL and not cfg.tie_embeddings:
        out["lm_head.weight"] = t("lm_head.weight")
    t.finish(tied=cfg.tie_embeddings or family.auto_class != CAUSAL)
    return {k: v.to("cpu").contiguous() for k, v in out.items()}


def hf_config(family: Family, cfg: ModelConfig, dtype: torch.dtype) -> dict[str, Any]:
    """The ``config.json`` of ``family`` for ``cfg``."""
    return {
        "model_type": family.name,
        "architectures": [family.architecture],
        **family.config(cfg),
        "tie_word_embeddings": cfg.tie_embeddings,
        "dtype": str(dtype).removeprefix("torch."),
    }
