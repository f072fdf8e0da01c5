"""Issue 12, item 10: a Hugging Face folder whose config.json disagrees with its weights, has a
field of the wrong type, or nests without end is one ConfigError naming the file and the field,
and the folder is left as it was."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from resnorm.errors import ConfigError
from resnorm.interop import from_hf

D, V, T = 16, 32, 8
GPT2 = {"model_type": "gpt2", "vocab_size": V, "n_embd": D, "n_layer": 1, "n_head": 2}
GPT2 |= {"n_positions": T, "architectures": ["GPT2LMHeadModel"]}


def gpt2_tensors() -> dict[str, torch.Tensor]:
    """A one-layer GPT-2 checkpoint's tensors (Conv1D weights stored (in, out))."""
    shapes = {"wte.weight": (V, D), "wpe.weight": (T, D), "ln_f.weight": (D,), "ln_f.bias": (D,)}
    for name, (n_in, n_out) in {"attn.c_attn": (D, 3 * D), "attn.c_proj": (D, D)}.items():
        shapes |= {f"h.0.{name}.weight": (n_in, n_out), f"h.0.{name}.bias": (n_out,)}
    for name, (n_in, n_out) in {"mlp.c_fc": (D, 4 * D), "mlp.c_proj": (4 * D, D)}.items():
        shapes |= {f"h.0.{name}.weight": (n_in, n_out), f"h.0.{name}.bias": (n_out,)}
    for norm in ("ln_1", "ln_2"):
        shapes |= {f"h.0.{norm}.weight": (D,), f"h.0.{norm}.bias": (D,)}
    gen = torch.Generator().manual_seed(0)
    return {f"transformer.{k}": torch.randn(s, generator=gen) for k, s in shapes.items()}


def folder(path: Path, config: dict[str, Any] | str) -> Path:
    path.mkdir()
    text = config if isinstance(config, str) else json.dumps(config)
    (path / "config.json").write_text(text)
    save_file(gpt2_tensors(), str(path / "model.safetensors"))
    return path


def refused(path: Path, field: str, *words: str) -> None:
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    with pytest.raises(ConfigError) as info:
        from_hf(path)
    message = str(info.value)
    assert info.value.field == field and "\n" not in message, message
    for word in (str(path / "config.json"), *words):
        assert word in message, f"{word!r} not in: {message}"
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before


def test_the_hand_made_gpt2_folder_loads(tmp_path: Path) -> None:
    model, cfg = from_hf(folder(tmp_path / "ok", GPT2))
    assert cfg.d_model == D and model(torch.zeros(1, T, dtype=torch.long)).shape == (1, T, V)


@pytest.mark.parametrize("n_embd", [8, 32])
def test_n_embd_disagreeing_with_the_weights_names_n_embd(tmp_path: Path, n_embd: int) -> None:
    path = folder(tmp_path / "c", {**GPT2, "n_embd": n_embd})
    refused(path, "config.json.n_embd", f"n_embd: {n_embd} (in", "disagrees", "h.0.attn.c_attn")


@pytest.mark.parametrize("model_type", [["gpt2"], {"a": 1}, 2, None])
def test_model_type_that_is_not_a_string_names_it(tmp_path: Path, model_type: Any) -> None:
    path = folder(tmp_path / "c", {**GPT2, "model_type": model_type})
    refused(path, "config.json.model_type", "expected a string", "gpt2 (GPT2LMHeadModel")


def test_architectures_entries_that_are_not_names_are_refused(tmp_path: Path) -> None:
    path = folder(tmp_path / "c", {**GPT2, "architectures": [["GPT2LMHeadModel"]]})
    refused(path, "config.json.architectures", "list of class names")


@pytest.mark.parametrize(
    "nested",
    [
        '{"model_type": "gpt2", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",  # stack exhausted
        json.dumps({**GPT2, "task_specific_params": {"a": [[[[{"b": [[[[[1]]]]]}]]]] * 5}}).replace(
            "[1]", "[" * 40 + "1" + "]" * 40
        ),  # parses, nested past the bound
    ],
)
def test_deeply_nested_config_json_is_refused(tmp_path: Path, nested: str) -> None:
    refused(folder(tmp_path / "c", nested), "config.json", "nested more than 32 levels")


def test_sizes_past_resnorm_bounds_name_the_file(tmp_path: Path) -> None:
    path = folder(tmp_path / "c", {**GPT2, "n_layer": 10**7})
    refused(path, "config.json", "model.n_layers", "[1, 10000]")
