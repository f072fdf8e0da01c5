"""`resnorm.interop.from_hf` loads Hugging Face checkpoints that compute what `transformers` does.

Each case builds a tiny random-weight `transformers` model, adds noise to every parameter (HF
initializes norms to 1/0, or Gemma's to 0, which would hide a mapping error), saves it with
``save_pretrained`` (safetensors) and compares outputs in fp32, for both resnorm attention paths
against HF's eager and SDPA attention (Gemma-2 and GPT-1: eager only, HF has no SDPA path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import transformers as hf
from safetensors.torch import load_file, save_file
from torch import Tensor

from resnorm.interop import from_hf

TOL = {"atol": 1e-5, "rtol": 1e-5}
VOCAB, SEQ = 61, 11
BOTH = ("eager", "sdpa")


def tiny(cls: type, seed: int, **config: Any) -> Any:
    """A random HF model of class ``cls`` with noise on every parameter, in eval mode."""
    torch.manual_seed(seed)
    config_cls = {
        "GPT2": hf.GPT2Config,
        "OpenAIGPT": hf.OpenAIGPTConfig,
        "Bert": hf.BertConfig,
        "Llama": hf.LlamaConfig,
        "Gemma2": hf.Gemma2Config,
        "Olmo2": hf.Olmo2Config,
    }
    prefix = next(p for p in config_cls if cls.__name__.startswith(p))
    special = {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    model = cls(config_cls[prefix](vocab_size=VOCAB, **special, **config))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def hf_outputs(model: Any, impl: str, ids: Tensor, mask: Tensor | None) -> Tensor:
    """Logits of a causal LM, last_hidden_state of a base model, under attention ``impl``."""
    model.set_attn_implementation(impl)
    assert model.config._attn_implementation == impl
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


def resnorm_outputs(path: Path, attention: str, ids: Tensor, mask: Tensor | None, hidden: bool):
    model, _ = from_hf(path, attention=attention)
    with torch.no_grad():
        return (model.hidden if hidden else model)(ids, attention_mask=mask)


def inputs(seed: int, pad: int) -> tuple[Tensor, Tensor | None]:
    """Two sequences; the second right-padded by ``pad`` tokens when ``pad`` > 0."""
    torch.manual_seed(seed)
    ids = torch.randint(0, VOCAB, (2, SEQ))
    if not pad:
        return ids, None
    mask = torch.ones(2, SEQ, dtype=torch.long)
    mask[1, SEQ - pad :] = 0
    return ids, mask


def check_parity(
    tmp_path: Path, model: Any, *, hf_impls: tuple[str, ...] = BOTH, pad: int = 0, hidden=False
) -> float:
    """Save ``model``, load it with resnorm; assert every (HF, resnorm) attention pair agrees."""
    model.save_pretrained(tmp_path)
    ids, mask = inputs(1, pad)
    worst = 0.0
    for impl in hf_impls:
        expected = hf_outputs(model, impl, ids, mask)
        for attention in BOTH:
            actual = resnorm_outputs(tmp_path, attention, ids, mask, hidden)
            torch.testing.assert_close(actual, expected, **TOL)
            worst = max(worst, (actual - expected).abs().max().item())
    return worst


# --- GPT-2 -----------------------------------------------------------------------------------
GPT2_CASES = {
    "tied_48": {"n_embd": 48, "n_layer": 3, "n_head": 4, "n_positions": 16},
    "untied_72_inner_gelu_noscale": {
        "n_embd": 72,
        "n_layer": 3,
        "n_head": 6,
        "n_positions": 16,
        "n_inner": 100,
        "activation_function": "gelu",
        "layer_norm_epsilon": 1e-3,
        "tie_word_embeddings": False,
        "scale_attn_weights": False,
    },
}


@pytest.mark.parametrize("case", GPT2_CASES)
def test_gpt2_lm_logits_match_transformers(tmp_path: Path, case: str) -> None:
    check_parity(tmp_path, tiny(hf.GPT2LMHeadModel, 0, **GPT2_CASES[case]))


def test_gpt2_base_model_hidden_matches_transformers(tmp_path: Path) -> None:
    model = tiny(hf.GPT2Model, 1, n_embd=48, n_layer=3, n_head=4, n_positions=16)
    check_parity(tmp_path, model, hidden=True)


def test_gpt2_loads_in_float64_and_matches_transformers_to_1e_12(tmp_path: Path) -> None:
    """With ``dtype=float64`` the mapping is exact far below fp32 noise (no approximation)."""
    model = tiny(hf.GPT2LMHeadModel, 0, **GPT2_CASES["tied_48"])
    model.save_pretrained(tmp_path)
    ids, _ = inputs(1, 0)
    loaded, _ = from_hf(tmp_path, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in loaded.parameters()) and not loaded.training
    expected = hf_outputs(model.double(), "eager", ids, None)
    torch.testing.assert_close(loaded(ids), expected, atol=1e-12, rtol=1e-12)


# --- GPT-1 (OpenAI GPT) ---------------------------------------------------------------------
GPT1_CASES = {
    "tied_48_gelu": {"n_embd": 48, "n_layer": 3, "n_head": 4, "n_positions": 16},
    "untied_72_relu_eps": {
        "n_embd": 72,
        "n_layer": 3,
        "n_head": 6,
        "n_positions": 16,
        "afn": "relu",
        "layer_norm_epsilon": 1e-3,
        "tie_word_embeddings": False,
    },
}


@pytest.mark.parametrize("case", GPT1_CASES)
def test_gpt1_logits_match_transformers(tmp_path: Path, case: str) -> None:
    """GPT-1 is a post_ln decoder; transformers has only an eager attention path for it."""
    model = tiny(hf.OpenAIGPTLMHeadModel, 0, **GPT1_CASES[case])
    check_parity(tmp_path, model, hf_impls=("eager",), pad=3)


# --- BERT ------------------------------------------------------------------------------------
BERT = {"num_hidden_layers": 3, "max_position_embeddings": 16, "type_vocab_size": 2}


def test_bert_hidden_with_padding_matches_transformers(tmp_path: Path) -> None:
    model = tiny(
        hf.BertModel, 2, hidden_size=48, num_attention_heads=4, intermediate_size=80, **BERT
    )
    check_parity(tmp_path, model, pad=4, hidden=True)


def test_bert_masked_lm_loads_encoder_and_ties_head_to_word_embeddings(tmp_path: Path) -> None:
    model = tiny(
        hf.BertForMaskedLM,
        3,
        hidden_size=72,
        num_attention_heads=6,
        intermediate_size=96,
        hidden_act="gelu_new",
        layer_norm_eps=1e-6,
        **BERT,
    )
    model.save_pretrained(tmp_path)
    ids, mask = inputs(1, pad=3)
    expected = model.bert(input_ids=ids, attention_mask=mask).last_hidden_state
    loaded, cfg = from_hf(tmp_path)
    torch.testing.assert_close(loaded.hidden(ids, attention_mask=mask), expected, **TOL)
    assert cfg.tie_embeddings and loaded.lm_head.weight is loaded.embed.tok.weight


def test_bert_legacy_layernorm_gamma_beta_names_load(tmp_path: Path) -> None:
    model = tiny(
        hf.BertModel, 2, hidden_size=48, num_attention_heads=4, intermediate_size=80, **BERT
    )
    model.save_pretrained(tmp_path)
    file = tmp_path / "model.safetensors"
    renamed = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
            "LayerNorm.bias", "LayerNorm.beta"
        ): v
        for k, v in load_file(file).items()
    }
    assert any(k.endswith("LayerNorm.gamma") for k in renamed)
    save_file(renamed, str(file))
    ids, mask = inputs(1, pad=4)
    loaded, _ = from_hf(tmp_path)
    expected = hf_outputs(model, "eager", ids, mask)
    torch.testing.assert_close(loaded.hidden(ids, attention_mask=mask), expected, **TOL)


def test_bert_untied_masked_lm_head_holds_the_decoder_matrix(tmp_path: Path) -> None:
    model = tiny(
        hf.BertForMaskedLM,
        4,
        hidden_size=48,
        num_attention_heads=4,
        intermediate_size=64,
        tie_word_embeddings=False,
        **BERT,
    )
    model.save_pretrained(tmp_path)
    loaded, cfg = from_hf(tmp_path)
    assert not cfg.tie_embeddings
    torch.testing.assert_close(loaded.lm_head.weight, model.cls.predictions.decoder.weight)


# --- Llama -----------------------------------------------------------------------------------
LLAMA_CASES = {
    "gqa_tied_48": {
        "hidden_size": 48,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "tie_word_embeddings": True,
        "rope_parameters": {"rope_type": "default", "rope_theta": 500.0},
    },
    "gqa_untied_72_headdim16_biases": {
        "hidden_size": 72,
        "num_attention_heads": 6,
        "num_key_value_heads": 3,
        "head_dim": 16,
        "attention_bias": True,
        "mlp_bias": True,
        "rms_norm_eps": 1e-5,
    },
}
LLAMA = {"num_hidden_layers": 3, "intermediate_size": 80, "max_position_embeddings": 32}


@pytest.mark.parametrize("case", LLAMA_CASES)
def test_llama_logits_match_transformers(tmp_path: Path, case: str) -> None:
    model = tiny(hf.LlamaForCausalLM, 5, **LLAMA, **LLAMA_CASES[case])
    check_parity(tmp_path, model, pad=3)


def test_llama_sharded_checkpoint_loads(tmp_path: Path) -> None:
    model = tiny(hf.LlamaForCausalLM, 6, hidden_size=48, num_attention_heads=4, **LLAMA)
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("*.safetensors"))) > 1
    ids, _ = inputs(1, 0)
    loaded, _ = from_hf(tmp_path)
    torch.testing.assert_close(loaded(ids), hf_outputs(model, "eager", ids, None), **TOL)


# --- Gemma-2 ---------------------------------------------------------------------------------
GEMMA2_CASES = {
    # Window 4 < sequence 11, so the local layers (0 and 2) see less than the global one.
    "window4_softcaps_tied_48": {
        "hidden_size": 48,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "query_pre_attn_scalar": 24,
        "attn_logit_softcapping": 2.0,
        "final_logit_softcapping": 3.0,
    },
    "window4_nocaps_untied_72_every_third_local": {
        "hidden_size": 72,
        "num_attention_heads": 6,
        "num_key_value_heads": 2,
        "head_dim": 12,
        "attn_logit_softcapping": None,
        "final_logit_softcapping": None,
        "tie_word_embeddings": False,
        "rms_norm_eps": 1e-5,
        "layer_types": ["sliding_attention", "full_attention", "full_attention"],
    },
}
GEMMA2 = {
    "num_hidden_layers": 3,
    "intermediate_size": 80,
    "max_position_embeddings": 32,
    "sliding_window": 4,
}


@pytest.mark.parametrize("case", GEMMA2_CASES)
def test_gemma2_logits_match_transformers(tmp_path: Path, case: str) -> None:
    model = tiny(hf.Gemma2ForCausalLM, 7, **GEMMA2, **GEMMA2_CASES[case])
    check_parity(tmp_path, model, hf_impls=("eager",), pad=2)


def test_gemma2_parity_depends_on_the_sliding_window(tmp_path: Path) -> None:
    """The Gemma-2 cases would catch a loader that dropped the window: it changes the logits."""
    model = tiny(hf.Gemma2ForCausalLM, 7, **GEMMA2, **GEMMA2_CASES["window4_softcaps_tied_48"])
    model.save_pretrained(tmp_path)
    loaded, cfg = from_hf(tmp_path)
    assert (cfg.sliding_window, cfg.sliding_window_pattern) == (4, 2)
    ids, _ = inputs(1, 0)
    global_only = type(loaded)(cfg.replace(sliding_window=None))
    global_only.load_state_dict(loaded.state_dict())
    with torch.no_grad():
        assert (global_only(ids) - loaded(ids)).abs().max() > 1e-2


# --- OLMo-2 ----------------------------------------------------------------------------------
OLMO2_CASES = {
    "gqa_untied_48": {"hidden_size": 48, "num_attention_heads": 4, "num_key_value_heads": 2},
    "mha_tied_72_bias": {
        "hidden_size": 72,
        "num_attention_heads": 6,
        "tie_word_embeddings": True,
        "attention_bias": True,
        "rope_parameters": {"rope_type": "default", "rope_theta": 300.0},
    },
}


@pytest.mark.parametrize("case", OLMO2_CASES)
def test_olmo2_logits_match_transformers(tmp_path: Path, case: str) -> None:
    model = tiny(hf.Olmo2ForCausalLM, 8, **LLAMA, **OLMO2_CASES[case])
    check_parity(tmp_path, model, pad=3)
