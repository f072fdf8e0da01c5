"""A corpus of hand-made damaged Hugging Face folders (issue 12): each is loaded through
``resnorm.interop.from_hf`` (a ConfigError, no other exception) and through the CLI that reads
such folders (``resnorm export FOLDER --hf OUT``: exit 2, one line, no traceback), and every file
is left byte-identical, the output folder never created.

The valid folders are written by ``to_hf`` from small resnorm models (GPT-2, Llama, BERT), then
one thing is broken per case: config.json (truncated, not an object, not UTF-8, a wrong or
unknown field, sizes disagreeing with the weights), the weights (missing, corrupt header,
truncated, a tensor missing, of the wrong shape or dtype) or the shard index.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from fuzz.fuzzkit import cli_refuses, guarded
from resnorm.interop import from_hf, to_hf
from resnorm.nn.config import ModelConfig
from resnorm.nn.model import build_model

SMALL = {"vocab_size": 40, "d_model": 16, "n_layers": 2, "n_heads": 2, "max_seq_len": 16}
FAMILIES: dict[str, dict[str, Any]] = {
    "gpt2": {**SMALL, "attn_bias": True, "mlp_bias": True},
    "llama": {**SMALL, "positional": "rope", "norm": "rmsnorm", "mlp": "swiglu"},
    "bert": {**SMALL, "kind": "encoder", "topology": "post_ln", "embed_norm": True},
}
EPS_KEY = {"gpt2": "layer_norm_epsilon", "llama": "rms_norm_eps", "bert": "layer_norm_eps"}
WIDTH_KEY = {"gpt2": "n_embd", "llama": "hidden_size", "bert": "hidden_size"}
LAYERS_KEY = {"gpt2": "n_layer", "llama": "num_hidden_layers", "bert": "num_hidden_layers"}
WEIGHTS = "model.safetensors"

Damage = Callable[[Path, str], None]


def _config(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "config.json").read_text())  # type: ignore[no-any-return]


def _set_config(folder: Path, **changes: Any) -> None:
    (folder / "config.json").write_text(json.dumps({**_config(folder), **changes}))


def _bytes(name: str, edit: Callable[[bytes], bytes]) -> Damage:
    def damage(folder: Path, family: str) -> None:
        path = folder / name
        path.write_bytes(edit(path.read_bytes()))

    return damage


def _field(key: str | dict[str, str], value: Any) -> Damage:
    def damage(folder: Path, family: str) -> None:
        _set_config(folder, **{key if isinstance(key, str) else key[family]: value})

    return damage


def _tensors(edit: Callable[[dict[str, torch.Tensor]], None]) -> Damage:
    def damage(folder: Path, family: str) -> None:
        tensors = load_file(str(folder / WEIGHTS))
        edit(tensors)
        save_file(tensors, str(folder / WEIGHTS), metadata={"format": "pt"})

    return damage


def _largest(tensors: dict[str, torch.Tensor]) -> str:
    return max(sorted(tensors), key=lambda k: tensors[k].numel())


def _wrong_shape(tensors: dict[str, torch.Tensor]) -> None:
    name = _largest(tensors)
    tensors[name] = tensors[name][:-1].contiguous()


def _transposed(tensors: dict[str, torch.Tensor]) -> None:
    name = next(k for k in sorted(tensors) if tensors[k].ndim == 2 and k.endswith("weight"))
    name = next(
        (k for k in sorted(tensors) if tensors[k].ndim == 2 and len(set(tensors[k].shape)) == 2),
        name,
    )
    tensors[name] = tensors[name].t().contiguous()


def _int_dtype(tensors: dict[str, torch.Tensor]) -> None:
    name = _largest(tensors)
    tensors[name] = tensors[name].to(torch.int32)


def _drop_one(tensors: dict[str, torch.Tensor]) -> None:
    del tensors[sorted(tensors)[len(tensors) // 2]]


def _header_length(data: bytes) -> bytes:
    return struct.pack("<Q", 2**62) + data[8:]


def _header_garbage(data: bytes) -> bytes:
    (n,) = struct.unpack("<Q", data[:8])
    return data[:8] + b"{" * n + data[8 + n :]


def _header_not_object(data: bytes) -> bytes:
    (n,) = struct.unpack("<Q", data[:8])
    return data[:8] + b"[1]".ljust(n) + data[8 + n :]


def _index_to_missing_shard(folder: Path, family: str) -> None:
    names = load_file(str(folder / WEIGHTS))
    index = {"metadata": {}, "weight_map": dict.fromkeys(names, "model-00001-of-00002.safetensors")}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def _config_is_folder(folder: Path, family: str) -> None:
    (folder / "config.json").unlink()
    (folder / "config.json").mkdir()


def _nested(folder: Path, family: str) -> None:
    depth = 100_000  # past the JSON parser's stack
    text = (folder / "config.json").read_text()
    deep = "[" * depth + "1" + "]" * depth
    (folder / "config.json").write_text(text.replace("{", '{"extra": ' + deep + ", ", 1))


CORPUS: dict[str, Damage] = {
    "config truncated": _bytes("config.json", lambda b: b[: len(b) // 2]),
    "config empty": _bytes("config.json", lambda b: b""),
    "config not an object": _bytes("config.json", lambda b: b"[1, 2, 3]"),
    "config a string": _bytes("config.json", lambda b: b'"gpt2"'),
    "config not UTF-8": _bytes("config.json", lambda b: b"\xff\xfe" + b),
    "config missing": lambda folder, family: (folder / "config.json").unlink(),
    "config is a folder": _config_is_folder,
    "config nested without end": _nested,
    "model_type unknown": _field("model_type", "gpt5"),
    "model_type a list": _field("model_type", ["gpt2"]),
    "model_type missing": lambda folder, family: (folder / "config.json").write_text(
        json.dumps({k: v for k, v in _config(folder).items() if k != "model_type"})
    ),
    "width disagrees with weights": _field(WIDTH_KEY, 32),
    "width a string": _field(WIDTH_KEY, "16"),
    "width zero": _field(WIDTH_KEY, 0),
    "width huge": _field(WIDTH_KEY, 10**12),
    "eps NaN": _field(EPS_KEY, float("nan")),
    "eps infinite": _field(EPS_KEY, float("inf")),
    "eps a 400-digit number": _field(EPS_KEY, 10**400),
    "eps negative": _field(EPS_KEY, -1e-5),
    "layers more than the weights": _field(LAYERS_KEY, 3),
    "layers negative": _field(LAYERS_KEY, -1),
    "layers a float": _field(LAYERS_KEY, 2.5),
    "vocab disagrees with weights": _field("vocab_size", 41),
    "vocab a 400-digit number": _field("vocab_size", 10**400),
    "weights missing": lambda folder, family: (folder / WEIGHTS).unlink(),
    "weights empty": _bytes(WEIGHTS, lambda b: b""),
    "weights truncated": _bytes(WEIGHTS, lambda b: b[: len(b) // 2]),
    "header length corrupt": _bytes(WEIGHTS, _header_length),
    "header not JSON": _bytes(WEIGHTS, _header_garbage),
    "header not an object": _bytes(WEIGHTS, _header_not_object),
    "a weight of the wrong shape": _tensors(_wrong_shape),
    "a weight transposed": _tensors(_transposed),
    "a weight of integer dtype": _tensors(_int_dtype),
    "a weight missing": _tensors(_drop_one),
    "index names a missing shard": _index_to_missing_shard,
}


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One valid folder per family, written by ``to_hf`` and checked to load."""
    root = tmp_path_factory.mktemp("hf")
    out = {}
    for family, fields in FAMILIES.items():
        cfg = ModelConfig(**fields)
        torch.manual_seed(0)
        written = to_hf(build_model(cfg), cfg, root / family, strict=True)
        assert _config(root / family)["model_type"] == family, written
        from_hf(root / family)
        out[family] = root / family
    return out


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("case", sorted(CORPUS))
def test_a_damaged_folder_is_one_config_error_and_changes_nothing(
    case: str, family: str, valid: dict[str, Path], tmp_path: Path, capsys: Any
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(valid[family], folder)
    CORPUS[case](folder, family)
    accepted = guarded(tmp_path, lambda: from_hf(folder))
    assert not accepted, f"{case}: from_hf accepted a damaged {family} folder"
    code = cli_refuses(tmp_path, capsys, ["export", str(folder), "--hf", str(tmp_path / "out")])
    assert code == 2, f"{case}: exit {code}, expected 2 (bad input)"
    assert not (tmp_path / "out").exists()
