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

from resnorm.interop.hf_common import Converter, HFConfig, Tensors, linear, lm_head, register, tied
from resnorm.interop.hf_gpt2 import conv1d, fused_qkv

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
    d = cfg["d_model"]
    out = {
        "embed.tok.weight": t.take("tokens_embed.weight"),
        "embed.pos.weight": t.take("positions_embed.weight"),
    }
    for i in range(cfg["n_layers"]):
        src, dst = f"h.{i}", f"decoder.layers.{i}"
        weight, bias = fused_qkv(t, f"{src}.attn.c_attn", d)
        for name, w, b in zip("qkv", weight.split(d, dim=1), bias.split(d), strict=True):
            out[f"{dst}.attn.{name}_proj.weight"] = w.t().contiguous()
            out[f"{dst}.attn.{name}_proj.bias"] = b.clone()
        conv1d(out, f"{dst}.attn.o_proj", t, f"{src}.attn.c_proj")
        conv1d(out, f"{dst}.mlp.up", t, f"{src}.mlp.c_fc")
        conv1d(out, f"{dst}.mlp.down", t, f"{src}.mlp.c_proj")
        linear(out, f"{dst}.norm_attn", t, f"{src}.ln_1", bias=True)
        linear(out, f"{dst}.norm_mlp", t, f"{src}.ln_2", bias=True)
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
