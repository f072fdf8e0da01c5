"""`from_hf` builds the model on the ``meta`` device and fills it from the checkpoint's tensors.

With the init scheme patched to raise, every supported family still loads (so no random init is
computed) and gives the logits `transformers` gives; and ``load_model`` falls back to `from_hf`
on a Hugging Face folder, so ``resnorm export --hf`` output loads back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import transformers as hf
from tests.interop.test_parity import TOL, hf_outputs, inputs, tiny
from tests.modeltools import noisy
from tests.modeltools import tiny as tiny_resnorm

from resnorm.interop import from_hf, to_hf
from resnorm.load import load_model

SMALL = {"num_hidden_layers": 2, "intermediate_size": 40, "max_position_embeddings": 16}
FAMILIES: dict[str, tuple[type, dict[str, Any]]] = {
    "gpt2": (hf.GPT2LMHeadModel, {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 16}),
    "openai-gpt": (
        hf.OpenAIGPTLMHeadModel,
        {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 16},
    ),
    "bert": (
        hf.BertModel,
        {"hidden_size": 32, "num_attention_heads": 4, **SMALL, "add_pooling_layer": False},
    ),
    "llama": (hf.LlamaForCausalLM, {"hidden_size": 32, "num_attention_heads": 4, **SMALL}),
    "gemma2": (
        hf.Gemma2ForCausalLM,
        {"hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8}
        | SMALL,
    ),
    "olmo2": (hf.Olmo2ForCausalLM, {"hidden_size": 32, "num_attention_heads": 4, **SMALL}),
}


def no_init(*args: object) -> None:
    raise AssertionError("a random init was computed while loading")


@pytest.mark.parametrize("family", FAMILIES)
def test_from_hf_builds_on_meta_and_computes_no_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, family: str
) -> None:
    cls, config = FAMILIES[family]
    model = tiny(cls, 3, **config)
    model.save_pretrained(tmp_path)
    ids, _ = inputs(1, 0)
    expected = hf_outputs(model, "eager", ids, None)
    monkeypatch.setattr("resnorm.nn.model.init_model", no_init)
    loaded, _ = from_hf(tmp_path)
    assert all(not t.is_meta for t in [*loaded.parameters(), *loaded.buffers()])
    assert all(p.is_contiguous() for p in loaded.parameters())
    with torch.no_grad():
        actual = (loaded.hidden if family == "bert" else loaded)(ids)
    torch.testing.assert_close(actual, expected, **TOL)


def test_load_model_reads_an_hf_export_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = noisy(tiny_resnorm("pre_ln"))
    to_hf(model, model.cfg, tmp_path / "hf")
    assert not (tmp_path / "hf" / "resnorm.json").exists()
    monkeypatch.setattr("resnorm.nn.model.init_model", no_init)
    loaded, cfg = load_model(tmp_path / "hf")
    ids = torch.randint(0, cfg.vocab_size, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), model.eval()(ids), **TOL)
