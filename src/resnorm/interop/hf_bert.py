"""BERT (``BertModel``, ``BertForMaskedLM``) -> a resnorm ``post_ln`` encoder.

BERT is Post-LN with LayerNorm, learned absolute positions, biases everywhere, an exact-GELU MLP
and a LayerNorm on the embedding output (Devlin et al. 2019, arXiv:1810.04805); resnorm's
``embed_norm`` is that norm. BERT adds a token-type (segment) embedding to every position; with
the default ``token_type_ids`` (all 0), row 0 is added everywhere, so it is folded into the
position table: ``pos_resnorm[t] = pos[t] + token_type[0]``. Inputs with segment ids other than 0
are therefore not represented. Reference: ``transformers/models/bert/modeling_bert.py``.

The head. ``BertModel`` has none, and ``BertForMaskedLM``'s prediction head is
``decoder(LayerNorm(gelu(dense(h)))) + bias``, which resnorm's single bias-free head matrix
cannot hold. The resnorm ``lm_head`` is tied to the word embeddings (BERT's MLM decoder matrix,
tied by default), or holds the checkpoint's untied decoder matrix; either way the transform and
the output bias are dropped, so the resnorm logits are ``h @ W^T`` and not BERT's MLM logits.
Compare ``Transformer.hidden`` with BERT's ``last_hidden_state``. The pooler and the
pre-training heads are likewise dropped.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from resnorm.errors import ConfigError
from resnorm.interop.hf_common import Converter, HFConfig, Tensors, linear, lm_head, register

DECODER = "cls.predictions.decoder.weight"


def bert_config(hf: HFConfig, t: Tensors, has_head: bool) -> dict[str, Any]:
    hf.expect("position_embedding_type", ("absolute",), "absolute", "relative position scores")
    hf.expect("is_decoder", (False,), False, "causal BERT")
    hf.expect("add_cross_attention", (False,), False, "cross-attention layers")
    untied = not hf.flag("tie_word_embeddings", True) and t.has(DECODER)
    return {
        "kind": "encoder",
        "vocab_size": hf.require("vocab_size"),
        "d_model": hf.require("hidden_size"),
        "n_layers": hf.require("num_hidden_layers"),
        "n_heads": hf.require("num_attention_heads"),
        "d_ff": hf.require("intermediate_size"),
        "mlp": hf.activation("hidden_act", "gelu", gated=False),
        "positional": "learned",
        "norm": "layernorm",
        "norm_eps": hf.number("layer_norm_eps", 1e-12),
        "topology": "post_ln",
        "attn_bias": True,
        "mlp_bias": True,
        "embed_norm": True,
        "tie_embeddings": not untied,
        "max_seq_len": hf.integer("max_position_embeddings", 512),
    }


def bert_weights(t: Tensors, cfg: dict[str, Any]) -> dict[str, Tensor]:
    pos = t.take("embeddings.position_embeddings.weight")
    if t.has("embeddings.token_type_embeddings.weight"):
        types = t.take("embeddings.token_type_embeddings.weight")
        if types.ndim != 2 or pos.ndim != 2 or types.shape[1] != pos.shape[1]:
            raise ConfigError(
                "weights",
                f"embeddings.token_type_embeddings.weight has shape {tuple(types.shape)}, but "
                f"the position table is {tuple(pos.shape)} in {t.source}: expected (types, "
                f"{pos.shape[-1] if pos.ndim else '?'})",
            )
        pos = pos + types[0]
    out = {"embed.tok.weight": t.take("embeddings.word_embeddings.weight"), "embed.pos.weight": pos}
    linear(out, "encoder.embed_norm", t, "embeddings.LayerNorm", bias=True)
    for i in range(cfg["n_layers"]):
        src, dst = f"encoder.layer.{i}", f"encoder.layers.{i}"
        for name, hf_name in (("q", "query"), ("k", "key"), ("v", "value")):
            linear(out, f"{dst}.attn.{name}_proj", t, f"{src}.attention.self.{hf_name}", bias=True)
        linear(out, f"{dst}.attn.o_proj", t, f"{src}.attention.output.dense", bias=True)
        linear(out, f"{dst}.norm_attn", t, f"{src}.attention.output.LayerNorm", bias=True)
        linear(out, f"{dst}.mlp.up", t, f"{src}.intermediate.dense", bias=True)
        linear(out, f"{dst}.mlp.down", t, f"{src}.output.dense", bias=True)
        linear(out, f"{dst}.norm_mlp", t, f"{src}.output.LayerNorm", bias=True)
    lm_head(out, cfg["tie_embeddings"], t, DECODER)
    return out


BERT = register(
    Converter(
        model_type="bert",
        architectures={"BertModel": False, "BertForMaskedLM": True},
        prefix="bert",
        config=bert_config,
        weights=bert_weights,
        # The pooler, the MLM transform and bias, NSP head; a stale position-id buffer.
        ignore=("pooler.*", "cls.*", "embeddings.position_ids", "embeddings.token_type_ids"),
    )
)
