"""`resnorm.interop.from_hf` refuses, with a `ConfigError` naming the cause, what it cannot load
exactly: missing files, unsupported model types and architectures, config fields resnorm cannot
represent, and tensors that are missing, extra or mis-shaped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers as hf
from safetensors.torch import load_file, save_file

from resnorm.errors import ConfigError
from resnorm.interop import SUPPORTED, from_hf

SIZES = {
    "vocab_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 16,
}
CONFIGS: dict[str, dict[str, Any]] = {
    "gpt2": {
        "model_type": "gpt2",
        "vocab_size": 32,
        "n_embd": 16,
        "n_layer": 2,
        "n_head": 2,
        "n_positions": 8,
    },
    "bert": {"model_type": "bert", "hidden_size": 16, **SIZES},
    "llama": {"model_type": "llama", "hidden_size": 16, **SIZES},
    "gemma2": {"model_type": "gemma2", "hidden_size": 16, **SIZES},
    "olmo2": {"model_type": "olmo2", "hidden_size": 16, **SIZES},
}


def write(
    path: Path, config: dict[str, Any], tensors: dict[str, torch.Tensor] | None = None
) -> Path:
    """A checkpoint folder: ``config.json`` and one safetensors file (a dummy tensor by default)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    save_file(tensors or {"dummy": torch.zeros(1)}, str(path / "model.safetensors"))
    return path


def raises(path: Path, field: str, *words: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        from_hf(path)
    assert info.value.field == field, str(info.value)
    for word in words:
        assert word in str(info.value), f"{word!r} not in: {info.value}"
    return info.value


# --- files -----------------------------------------------------------------------------------
def test_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    raises(tmp_path / "nope", "path", "not a directory")


def test_folder_without_config_json_is_a_config_error(tmp_path: Path) -> None:
    raises(tmp_path, "path", "no config.json")


def test_invalid_config_json_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    raises(tmp_path, "config.json", "not valid JSON")


def test_config_without_safetensors_is_a_config_error_and_pickle_is_not_loaded(
    tmp_path: Path,
) -> None:
    (tmp_path / "config.json").write_text(json.dumps(CONFIGS["llama"]))
    raises(tmp_path, "weights", "no *.safetensors")
    torch.save({"w": torch.zeros(1)}, tmp_path / "pytorch_model.bin")
    raises(tmp_path, "weights", "pytorch_model.bin", "never loaded")


def test_corrupt_safetensors_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(CONFIGS["llama"]))
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    raises(tmp_path, "weights", "not a readable safetensors file")


def test_missing_shard_of_an_index_is_a_config_error(tmp_path: Path) -> None:
    write(tmp_path, CONFIGS["llama"])
    index = {"weight_map": {"dummy": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    raises(tmp_path, "weights", "model-00002-of-00002.safetensors", "missing")


# --- model types and architectures -----------------------------------------------------------
def test_unsupported_model_type_lists_the_supported_ones(tmp_path: Path) -> None:
    error = raises(write(tmp_path, {"model_type": "mistral"}), "config.json.model_type", "mistral")
    for model_type, architectures in SUPPORTED.items():
        assert model_type in str(error)
        assert all(arch in str(error) for arch in architectures)
    assert set(SUPPORTED) == {"gpt2", "openai-gpt", "bert", "llama", "gemma2", "olmo2"}


def test_unsupported_architecture_of_a_supported_type_is_a_config_error(tmp_path: Path) -> None:
    config = {**CONFIGS["llama"], "architectures": ["LlamaForSequenceClassification"]}
    raises(write(tmp_path, config), "config.json.architectures", "LlamaForCausalLM")


# --- config fields resnorm cannot represent --------------------------------------------------
UNSUPPORTED = [
    ("gpt2", {"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
    ("gpt2", {"reorder_and_upcast_attn": True}, "reorder_and_upcast_attn"),
    ("gpt2", {"add_cross_attention": True}, "add_cross_attention"),
    ("gpt2", {"activation_function": "quick_gelu"}, "activation_function"),
    ("bert", {"position_embedding_type": "relative_key"}, "position_embedding_type"),
    ("bert", {"is_decoder": True}, "is_decoder"),
    ("llama", {"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "rope_scaling"),
    ("llama", {"rope_parameters": {"rope_type": "yarn", "factor": 2.0}}, "rope_parameters"),
    ("llama", {"rope_parameters": {"rope_theta": 1e4, "beta_fast": 2}}, "rope_parameters"),
    ("llama", {"partial_rotary_factor": 0.5}, "partial_rotary_factor"),
    ("llama", {"hidden_act": "gelu"}, "hidden_act"),
    ("llama", {"hidden_size": None}, "hidden_size"),
    ("llama", {"num_key_value_heads": 1.5}, "num_key_value_heads"),
    ("llama", {"rms_norm_eps": "small"}, "rms_norm_eps"),
    ("llama", {"tie_word_embeddings": "yes"}, "tie_word_embeddings"),
    ("gemma2", {"layer_types": ["full_attention", "sliding_attention"]}, "layer_types"),
    ("gemma2", {"layer_types": ["sliding_attention"]}, "layer_types"),
    ("gemma2", {"sliding_window": None}, "sliding_window"),
    ("gemma2", {"use_bidirectional_attention": True}, "use_bidirectional_attention"),
    ("gemma2", {"hidden_activation": "gelu"}, "hidden_activation"),
    ("olmo2", {"rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_scaling"),
]


@pytest.mark.parametrize(("model_type", "change", "field"), UNSUPPORTED)
def test_unsupported_field_raises_naming_it(
    tmp_path: Path, model_type: str, change: dict[str, Any], field: str
) -> None:
    config = {**CONFIGS[model_type], **change}
    if change.get("hidden_size", 0) is None:
        del config["hidden_size"]
    raises(write(tmp_path, config), f"config.json.{field}")


# --- tensors ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    config = hf.LlamaConfig(
        hidden_size=16, num_key_value_heads=1, bos_token_id=None, eos_token_id=None, **SIZES
    )
    path = tmp_path_factory.mktemp("llama")
    hf.LlamaForCausalLM(config).save_pretrained(path)
    return path


def edited(src: Path, dst: Path, tensors: dict[str, torch.Tensor] | None = None, **config: Any):
    """A copy of checkpoint ``src`` with config fields changed and tensors replaced."""
    shutil.copytree(src, dst)
    if config:
        data = json.loads((dst / "config.json").read_text())
        (dst / "config.json").write_text(json.dumps({**data, **config}))
    if tensors is not None:
        save_file(tensors, str(dst / "model.safetensors"))
    return dst


def test_the_unedited_checkpoint_loads(llama_folder: Path) -> None:
    from_hf(llama_folder)


def test_missing_tensor_is_named(llama_folder: Path, tmp_path: Path) -> None:
    tensors = load_file(llama_folder / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    raises(edited(llama_folder, tmp_path / "c", tensors), "weights", "layers.1.mlp.up_proj.weight")


def test_untied_checkpoint_without_its_head_is_a_config_error(
    llama_folder: Path, tmp_path: Path
) -> None:
    tensors = load_file(llama_folder / "model.safetensors")
    del tensors["lm_head.weight"]
    raises(edited(llama_folder, tmp_path / "c", tensors), "weights", "lm_head.weight")


def test_unmapped_extra_tensor_is_a_config_error(llama_folder: Path, tmp_path: Path) -> None:
    tensors = {
        **load_file(llama_folder / "model.safetensors"),
        "model.layers.0.extra": torch.ones(2),
    }
    raises(edited(llama_folder, tmp_path / "c", tensors), "weights", "layers.0.extra")


def test_tensor_shape_disagreeing_with_config_is_a_config_error(
    llama_folder: Path, tmp_path: Path
) -> None:
    raises(edited(llama_folder, tmp_path / "c", intermediate_size=24), "weights", "shape")


def test_config_with_fewer_layers_than_the_weights_is_a_config_error(
    llama_folder: Path, tmp_path: Path
) -> None:
    raises(edited(llama_folder, tmp_path / "c", num_hidden_layers=1), "weights", "layers.1")
