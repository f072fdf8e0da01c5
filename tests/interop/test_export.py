"""`resnorm.interop.to_hf` writes folders `transformers` loads with no resnorm code, computing
what the resnorm model computes; configs no HF architecture computes become resnorm folders.

Each case builds a tiny resnorm model, adds noise to every parameter (norm gains of 1 would hide a
mapping error), exports it, loads it with the family's Auto class (``local_files_only``) and
compares fp32 outputs at the import parity tests' tolerance, under HF's eager and SDPA attention
(Gemma-2: eager only). ``from_hf`` of the export gives the same logits back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers as hf
from safetensors.torch import load_file
from torch import Tensor

from resnorm.errors import ConfigError
from resnorm.interop import from_hf, to_hf
from resnorm.interop.hf_export import family_for
from resnorm.load import load_model
from resnorm.nn.config import ModelConfig
from resnorm.nn.model import Transformer, build_model

TOL = {"atol": 1e-5, "rtol": 1e-5}  # as tests/interop/test_parity.py
BOTH = ("eager", "sdpa")
VOCAB, SEQ = 61, 11
SMALL = {"vocab_size": VOCAB, "d_model": 48, "n_layers": 3, "n_heads": 4, "max_seq_len": 32}
GPT2 = {**SMALL, "attn_bias": True, "mlp_bias": True}
ROPE = {**SMALL, "positional": "rope", "norm": "rmsnorm", "mlp": "swiglu"}
CASES: dict[str, dict[str, Any]] = {
    "gpt2_tied_gelu_tanh": {**GPT2, "mlp": "gelu_tanh"},
    # resnorm's defaults: no biases anywhere (exported as zero biases), exact GELU.
    "gpt2_default_config_zero_biases": {**SMALL, "norm_bias": False},
    "gpt2_untied_relu_eps_noscale_dff": {
        **GPT2, "mlp": "relu", "norm_eps": 1e-3, "attn_scale": 1.0, "d_ff": 100,
        "tie_embeddings": False,
    },
    "gpt1_tied_gelu_tanh": {**GPT2, "topology": "post_ln", "mlp": "gelu_tanh"},
    "gpt1_untied_relu_zero_biases_eps": {
        **SMALL, "topology": "post_ln", "mlp": "relu", "norm_eps": 1e-3, "tie_embeddings": False,
    },
    "llama_gqa_tied_theta500": {**ROPE, "n_kv_heads": 2, "rope_theta": 500.0},
    "llama_untied_biases_headdim16_geglu": {
        **ROPE, "n_heads": 6, "n_kv_heads": 3, "head_dim": 16, "attn_bias": True,
        "mlp_bias": True, "mlp": "geglu", "tie_embeddings": False, "norm_eps": 1e-5,
    },
    "gemma2_window4_softcaps_tied": {
        **ROPE, "topology": "sandwich_ln", "mlp": "geglu", "n_kv_heads": 2, "head_dim": 16,
        "embed_scale": True, "attn_scale": 24**-0.5, "attn_softcap": 2.0, "logit_softcap": 3.0,
        "sliding_window": 4, "sliding_window_pattern": 2,
    },
    "gemma2_every_third_local_untied_nocaps": {
        **ROPE, "topology": "sandwich_ln", "n_kv_heads": 2, "embed_scale": True,
        "sliding_window": 4, "sliding_window_pattern": 3, "tie_embeddings": False,
    },
    "gemma2_global_only_swiglu_bias": {
        **ROPE, "topology": "sandwich_ln", "embed_scale": True, "attn_bias": True,
    },
    "olmo2_gqa_untied": {
        **ROPE, "topology": "res_post_ln", "qk_norm": "full", "n_kv_heads": 2,
        "tie_embeddings": False,
    },
    "olmo2_tied_bias_theta300": {
        **ROPE, "topology": "res_post_ln", "qk_norm": "full", "attn_bias": True,
        "rope_theta": 300.0,
    },
    "bert_zero_biases": {
        **SMALL, "kind": "encoder", "topology": "post_ln", "embed_norm": True, "mlp": "relu",
    },
    "bert_gelu_eps": {
        **GPT2, "kind": "encoder", "topology": "post_ln", "embed_norm": True, "norm_eps": 1e-12,
    },
}  # fmt: skip


def noisy(cfg: ModelConfig, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def inputs(pad: int) -> tuple[Tensor, Tensor]:
    """Two sequences, the second right-padded by ``pad`` tokens."""
    torch.manual_seed(1)
    mask = torch.ones(2, SEQ, dtype=torch.long)
    mask[1, SEQ - pad :] = 0
    return torch.randint(0, VOCAB, (2, SEQ)), mask


def resnorm_out(model: Transformer, ids: Tensor, mask: Tensor) -> Tensor:
    with torch.no_grad():
        if model.cfg.kind == "encoder":
            return model.hidden(ids, attention_mask=mask)
        return model(ids, attention_mask=mask)


@pytest.mark.parametrize("case", CASES)
def test_export_loads_in_transformers_with_the_same_outputs(tmp_path: Path, case: str) -> None:
    cfg = ModelConfig(**CASES[case])
    model, bert = noisy(cfg), cfg.kind == "encoder"
    result = to_hf(model, cfg, tmp_path / "hf")
    assert result.is_hf and result.reason is None
    ids, mask = inputs(pad=3)
    expected = resnorm_out(model, ids, mask)
    auto = getattr(hf, str(result.auto_class))
    # transformers has no SDPA path for Gemma-2 (soft-capping) or GPT-1.
    impls = ("eager",) if cfg.topology in ("sandwich_ln", "post_ln") and not bert else BOTH
    for impl in impls:
        loaded, info = auto.from_pretrained(
            result.folder, attn_implementation=impl, local_files_only=True, output_loading_info=True
        )
        assert type(loaded).__name__ == result.architecture
        # Every HF tensor comes from the export: nothing initialized at random, nothing ignored.
        assert not info["missing_keys"] and not info["unexpected_keys"], info
        with torch.no_grad():
            out = loaded.eval()(input_ids=ids, attention_mask=mask)
        actual = out.last_hidden_state if cfg.kind == "encoder" else out.logits
        # Padded positions' outputs are padding; compare the real tokens.
        keep = mask.bool()
        torch.testing.assert_close(actual[keep], expected[keep], **TOL)
    back, back_cfg = from_hf(result.folder)
    torch.testing.assert_close(resnorm_out(back, ids, mask)[keep], expected[keep], **TOL)
    assert back_cfg.topology == cfg.topology and back_cfg.tie_embeddings == cfg.tie_embeddings


def test_tied_head_is_written_once_and_tied_again_on_load(tmp_path: Path) -> None:
    cfg = ModelConfig(**CASES["llama_gqa_tied_theta500"])
    result = to_hf(noisy(cfg), cfg, tmp_path)
    assert "lm_head.weight" not in load_file(result.folder / "model.safetensors")
    loaded = hf.AutoModelForCausalLM.from_pretrained(result.folder, local_files_only=True)
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()


def test_bfloat16_model_exports_bfloat16_tensors(tmp_path: Path) -> None:
    cfg = ModelConfig(**CASES["gemma2_window4_softcaps_tied"])
    model = noisy(cfg).to(torch.bfloat16)
    result = to_hf(model, cfg, tmp_path)
    assert json.loads((result.folder / "config.json").read_text())["dtype"] == "bfloat16"
    tensors = load_file(result.folder / "model.safetensors")
    assert {t.dtype for t in tensors.values()} == {torch.bfloat16}
    # Gemma-2 stores gain - 1, formed in fp32 before the cast back.
    gain = model.decoder.final_norm.weight
    expected = (gain.float() - 1).to(torch.bfloat16)
    torch.testing.assert_close(tensors["model.norm.weight"], expected, atol=0, rtol=0)


REFUSED = {
    # (config changes, the field named)
    "deepnorm_topology": ({**GPT2, "topology": "deepnorm"}, "model.topology"),
    "gpt2_layout_with_rmsnorm": ({**GPT2, "norm": "rmsnorm"}, "model.norm"),
    "gpt2_layout_with_gqa": ({**GPT2, "n_kv_heads": 2}, "model.n_kv_heads"),
    "gpt2_layout_with_qk_norm": ({**GPT2, "qk_norm": "head"}, "model.qk_norm"),
    "llama_layout_with_layernorm": ({**ROPE, "norm": "layernorm"}, "model.norm"),
    "llama_layout_with_softcap": ({**ROPE, "logit_softcap": 30.0}, "model.logit_softcap"),
    "llama_layout_plain_mlp": ({**ROPE, "mlp": "gelu"}, "model.mlp"),
    "gpt1_exact_gelu": ({**GPT2, "topology": "post_ln"}, "model.mlp"),
    "gpt1_d_ff": ({**GPT2, "topology": "post_ln", "mlp": "relu", "d_ff": 100}, "model.d_ff"),
    "no_positions": ({**ROPE, "positional": "none"}, "model.positional"),
    "gemma2_without_embed_scale": ({**ROPE, "topology": "sandwich_ln"}, "model.embed_scale"),
    "gemma2_with_mlp_bias": (
        {**ROPE, "topology": "sandwich_ln", "embed_scale": True, "mlp_bias": True},
        "model.mlp_bias",
    ),
    "olmo2_without_qk_norm": ({**ROPE, "topology": "res_post_ln"}, "model.qk_norm"),
    "bert_without_embed_norm": (
        {**GPT2, "kind": "encoder", "topology": "post_ln"}, "model.embed_norm"
    ),
    "bert_untied_head": (
        {**GPT2, "kind": "encoder", "topology": "post_ln", "embed_norm": True,
         "tie_embeddings": False}, "model.tie_embeddings",
    ),
    "pre_ln_encoder": ({**GPT2, "kind": "encoder"}, "model.topology"),
    "encoder_decoder": ({**GPT2, "kind": "encoder_decoder", "topology": "post_ln"}, "model.kind"),
}  # fmt: skip


@pytest.mark.parametrize("case", REFUSED)
def test_config_without_hf_equivalent_is_refused_naming_the_field(case: str) -> None:
    changes, field = REFUSED[case]
    with pytest.raises(ConfigError) as err:
        family_for(ModelConfig(**changes))
    assert err.value.field == field


def test_no_hf_equivalent_writes_a_resnorm_folder_that_says_why(tmp_path: Path) -> None:
    cfg = ModelConfig(**{**GPT2, "topology": "deepnorm"})
    model = noisy(cfg)
    result = to_hf(model, cfg, tmp_path / "out")
    assert not result.is_hf and result.reason and "model.topology" in result.reason
    assert "Hugging Face cannot load it" in result.summary()
    files = {p.name for p in result.folder.iterdir()}
    assert files == {"model.safetensors", "resnorm.json", "README.txt"}
    assert "model.topology" in (result.folder / "README.txt").read_text()
    # resnorm.load_model reads the folder back: same config, same logits.
    loaded, saved = load_model(result.folder)
    assert saved == cfg
    ids, mask = inputs(pad=0)
    torch.testing.assert_close(resnorm_out(loaded, ids, mask), resnorm_out(model, ids, mask))
    with pytest.raises(ConfigError, match=r"model\.topology"):
        to_hf(model, cfg, tmp_path / "strict", strict=True)
    assert not (tmp_path / "strict").exists()


def test_export_refuses_a_folder_that_holds_files(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("x")
    cfg = ModelConfig(**GPT2)
    with pytest.raises(ConfigError) as err:
        to_hf(build_model(cfg), cfg, tmp_path)
    assert err.value.field == "out_dir"
