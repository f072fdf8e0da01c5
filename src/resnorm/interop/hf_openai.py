"""OpenAI GPT, "GPT-1" (``OpenAIGPTLMHeadModel``, ``OpenAIGPTModel``) -> a resnorm ``post_ln``
decoder.

GPT-1 is the original Transformer's Post-LN block in a decoder-only LM: ``x <- LN(x + F(x))``, no
final norm, no norm on the embeddings, learned positions, biases everywhere, an MLP of width
``4 * n_embd`` and a head tied to the token embeddings (Radford et al. 2018, "Improving Language
Understanding by Generative Pre-Training"). Its projections are GPT-2's ``Conv1D`` (weight stored
(in, out), fused ``c_attn``). Its ``afn="gelu"`` is the tanh approximation (``gelu_new``), not
the exact GELU that ``"gelu"`` names elsewhere in ``transformers``.
Reference: ``transformers/models/openai/modeling_openai.py``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from resnorm.interop.hf_common import Converter, HFConfig, Tensors, lm_head, register, tied
from resnorm.interop.hf_gpt2 import gpt_blocks

# modeling_openai.ACT_FNS -> resnorm `mlp` (its "silu"/"swish" MLP is not gated: no resnorm mlp).
ACTIVATIONS = {"gelu": "gelu_tanh", "relu": "relu"}


def openai_config(hf: HFConfig, t: Tensors, has_head: bool) -> dict[str, Any]:
    afn = hf.string("afn", "gelu")
    if afn not in ACTIVATIONS:
        raise hf.error("afn", f"activation {afn!r} is not supported; supported: gelu, relu")
    return {
        "kind": "decoder",
        "vocab_size": hf.integer("vocab_size", 40478),
        "d_model": hf.integer("n_embd", 768),
        "n_layers": hf.integer("n_layer", 12),
        "n_heads": hf.integer("n_head", 12),
        "mlp": ACTIVATIONS[afn],
        "positional": "learned",
        "norm": "layernorm",
        "norm_eps": hf.number("layer_norm_epsilon", 1e-5),
        "topology": "post_ln",
        "attn_bias": True,
        "mlp_bias": True,
        "tie_embeddings": tied(hf, t, True, has_head),
        "max_seq_len": hf.integer("n_positions", 512),
    }


def openai_weights(t: Tensors, cfg: dict[str, Any]) -> dict[str, Tensor]:
    out = {
        "embed.tok.weight": t.take("tokens_embed.weight"),
        "embed.pos.weight": t.take("positions_embed.weight"),
    }
    out.update(gpt_blocks(t, cfg))  # GPT-2's block layout; GPT-1 has no final norm
    lm_head(out, cfg["tie_embeddings"], t)
    return out


OPENAI_GPT = register(
    Converter(
        model_type="openai-gpt",
        architectures={"OpenAIGPTLMHeadModel": True, "OpenAIGPTModel": False},
        prefix="transformer",
        config=openai_config,
        weights=openai_weights,
        # The causal-mask buffer of older checkpoints, and the position-id buffer.
        ignore=("h.*.attn.bias", "position_ids"),
    )
)
