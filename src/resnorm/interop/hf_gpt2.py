"""GPT-2 (``GPT2LMHeadModel``, ``GPT2Model``) -> a resnorm ``pre_ln`` decoder.

GPT-2 is Pre-LN with LayerNorm, learned positions, biases everywhere, a tanh-GELU MLP
(``gelu_new``) and a head tied to the token embeddings (Radford et al. 2019). Its projections are
``Conv1D`` modules whose weight is stored (in, out), the transpose of ``nn.Linear``'s, and the
query/key/value projections are one fused ``c_attn`` matrix split in three along its outputs.
Reference: ``transformers/models/gpt2/modeling_gpt2.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from resnorm.errors import ConfigError
from resnorm.interop.hf_common import Converter, HFConfig, Tensors, linear, lm_head, register, tied


def gpt2_config(hf: HFConfig, t: Tensors, has_head: bool) -> dict[str, Any]:
    hf.expect("scale_attn_by_inverse_layer_idx", (False,), False, "per-layer attention temperature")
    hf.expect("reorder_and_upcast_attn", (False,), False, "reordered, upcast attention")
    hf.expect("add_cross_attention", (False,), False, "cross-attention layers")
    return {
        "kind": "decoder",
        "vocab_size": hf.require("vocab_size"),
        "d_model": hf.require("n_embd"),
        "n_layers": hf.require("n_layer"),
        "n_heads": hf.require("n_head"),
        "d_ff": hf.optional_int("n_inner", None),  # None: 4 * d_model, as in GPT-2
        "mlp": hf.activation("activation_function", "gelu_new", gated=False),
        "positional": "learned",
        "norm": "layernorm",
        "norm_eps": hf.number("layer_norm_epsilon", 1e-5),
        "topology": "pre_ln",
        "attn_bias": True,
        "mlp_bias": True,
        # scale_attn_weights=False: raw dot products, no 1/sqrt(head_dim).
        "attn_scale": None if hf.flag("scale_attn_weights", True) else 1.0,
        "tie_embeddings": tied(hf, t, True, has_head),
        "max_seq_len": hf.require("n_positions"),
    }


def conv1d(out: dict[str, Tensor], dst: str, t: Tensors, src: str) -> None:
    """A ``Conv1D`` (weight (in, out)) as an ``nn.Linear`` (weight (out, in))."""
    out[f"{dst}.weight"] = t.take(f"{src}.weight").t().contiguous()
    out[f"{dst}.bias"] = t.take(f"{src}.bias")


def fused_qkv(t: Tensors, src: str, d: int) -> tuple[Tensor, Tensor]:
    """``c_attn``'s weight (d, 3d) and bias (3d,), checked against ``n_embd`` before they are
    split in three (a mismatch is the config's, not a converter bug)."""
    weight, bias = t.take(f"{src}.weight"), t.take(f"{src}.bias")
    if tuple(weight.shape) != (d, 3 * d) or tuple(bias.shape) != (3 * d,):
        raise ConfigError(
            "config.json.n_embd",
            f"{d} (in {Path(t.source) / 'config.json'}) disagrees with the weights: {src} has "
            f"weight {tuple(weight.shape)} and bias {tuple(bias.shape)}, where n_embd = {d} "
            f"implies {(d, 3 * d)} and {(3 * d,)}",
        )
    return weight, bias


def gpt2_weights(t: Tensors, cfg: dict[str, Any]) -> dict[str, Tensor]:
    """Each tensor is its own contiguous copy, not a view: the model is filled with them as they
    are (``assign=True``), and the fused or transposed source is freed layer by layer."""
    out = {"embed.tok.weight": t.take("wte.weight"), "embed.pos.weight": t.take("wpe.weight")}
    out.update(gpt_blocks(t, cfg))
    linear(out, "decoder.final_norm", t, "ln_f", bias=True)
    lm_head(out, cfg["tie_embeddings"], t)
    return out


def gpt_blocks(t: Tensors, cfg: dict[str, Any]) -> dict[str, Tensor]:
    """The ``h.<i>`` blocks of GPT-2 and GPT-1 (the same Conv1D layout; they differ only in
    where the norms sit, which the topology says, and in GPT-2's final norm)."""
    d, out = cfg["d_model"], {}
    for i in range(cfg["n_layers"]):
        src, dst = f"h.{i}", f"decoder.layers.{i}"
        weight, bias = fused_qkv(t, f"{src}.attn.c_attn", d)
        qkv_w, qkv_b = weight.split(d, dim=1), bias.split(d)  # (d, 3d) -> 3 x (d, d)
        for name, w, b in zip("qkv", qkv_w, qkv_b, strict=True):
            out[f"{dst}.attn.{name}_proj.weight"] = w.t().contiguous()
            out[f"{dst}.attn.{name}_proj.bias"] = b.clone()
        conv1d(out, f"{dst}.attn.o_proj", t, f"{src}.attn.c_proj")
        conv1d(out, f"{dst}.mlp.up", t, f"{src}.mlp.c_fc")
        conv1d(out, f"{dst}.mlp.down", t, f"{src}.mlp.c_proj")
        linear(out, f"{dst}.norm_attn", t, f"{src}.ln_1", bias=True)
        linear(out, f"{dst}.norm_mlp", t, f"{src}.ln_2", bias=True)
    return out


GPT2 = register(
    Converter(
        model_type="gpt2",
        architectures={"GPT2LMHeadModel": True, "GPT2Model": False},
        prefix="transformer",
        config=gpt2_config,
        weights=gpt2_weights,
        # Causal-mask buffers that checkpoints saved by transformers < 4.31 carry.
        ignore=("h.*.attn.bias", "h.*.attn.masked_bias"),
    )
)
