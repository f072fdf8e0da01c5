"""Load a local Hugging Face checkpoint folder into the equivalent resnorm `Transformer`.

``from_hf(path)`` reads ``config.json`` itself (``transformers`` need not be installed), builds the
`ModelConfig` that describes the same network, maps the ``*.safetensors`` tensors (one file or
shards listed in ``model.safetensors.index.json``; never pickle) onto resnorm's parameter names
and loads them with ``strict=True`` into a model built on the ``meta`` device: no random init
is computed, and each tensor is the checkpoint's own (or its one converted copy), so peak memory
stays near one copy of the weights. Supported ``model_type``s and classes: see `SUPPORTED`; the
mapping of each lives in ``hf_gpt2``, ``hf_openai``, ``hf_bert`` and ``hf_llama``.

Nothing is loaded approximately: a config field resnorm cannot represent (scaled RoPE, another
activation, an irregular sliding-window layout, ...) or a tensor it has no place for raises a
`ConfigError` naming it. Parity with ``transformers`` is tested in ``tests/interop``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import Tensor

from resnorm.errors import ConfigError
from resnorm.interop import hf_bert, hf_gpt2, hf_llama, hf_openai  # noqa: F401 (register them)
from resnorm.interop.hf_common import CONVERTERS, Converter, HFConfig, Tensors
from resnorm.load import build_loaded
from resnorm.nn.config import ModelConfig
from resnorm.nn.model import Transformer
from resnorm.typed import MAX_DEPTH, check_depth

INDEX = "model.safetensors.index.json"
# model_type -> supported architecture classes, e.g. {"llama": ("LlamaForCausalLM", ...)}.
SUPPORTED: dict[str, tuple[str, ...]] = {
    name: tuple(converter.architectures) for name, converter in sorted(CONVERTERS.items())
}


def supported_text() -> str:
    return "; ".join(f"{name} ({', '.join(archs)})" for name, archs in SUPPORTED.items())


def read_config(folder: Path) -> HFConfig:
    """The folder's ``config.json``; a ConfigError if the folder or file is missing or invalid."""
    if not folder.is_dir():
        raise ConfigError("path", f"{str(folder)!r} is not a directory (a local checkpoint folder)")
    file = folder / "config.json"
    if not file.is_file():
        raise ConfigError("path", f"no config.json in {str(folder)!r}")
    data = read_json(file, "config.json")
    if not isinstance(data, dict):
        raise ConfigError("config.json", f"{file} must hold a JSON object")
    return HFConfig(data, str(file))


def read_json(file: Path, field: str) -> Any:
    """The JSON value in ``file``, nested at most `MAX_DEPTH` levels; a ConfigError naming
    ``field`` and the file for invalid JSON, JSON nested deep enough to exhaust the stack, or a
    number of more than 4,300 digits."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except RecursionError:
        raise ConfigError(field, f"{file}: nested more than {MAX_DEPTH} levels deep") from None
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError, int()'s digit limit
        raise ConfigError(field, f"{file} is not valid JSON: {err}") from None
    except OSError as err:
        raise ConfigError(field, f"cannot read {file}: {err}") from None
    check_depth(data, field, where=f"{file}: ")
    return data


def weight_files(folder: Path) -> dict[str, Path]:
    """Where each tensor lives: the shards the index lists, else every ``*.safetensors`` file.

    Only the safetensors headers are read here; `Tensors` loads a file when it first needs it,
    so a config error surfaces before gigabytes are read.
    """
    index = folder / INDEX
    if index.is_file():
        try:
            weight_map = read_json(index, "weights")["weight_map"]
            files = sorted({folder / name for name in weight_map.values()})
        except (KeyError, TypeError, AttributeError) as err:
            raise ConfigError("weights", f"{index} has no valid weight_map: {err!r}") from None
    else:
        files = sorted(folder.glob("*.safetensors"))
    if not files:
        pickled = sorted(p.name for p in folder.glob("*.bin")) + sorted(
            p.name for p in folder.glob("*.pt*")
        )
        hint = f" (found {', '.join(pickled)}: pickle files are never loaded)" if pickled else ""
        raise ConfigError("weights", f"no *.safetensors weights in {str(folder)!r}{hint}")
    where: dict[str, Path] = {}
    for file in files:
        if not file.is_file():
            raise ConfigError("weights", f"shard {file.name!r} listed in {INDEX} is missing")
        try:
            with safe_open(file, framework="pt") as handle:
                names = list(handle.keys())
        except Exception as err:  # safetensors raises its own error types for a bad header
            raise ConfigError(
                "weights", f"{file} is not a readable safetensors file: {err}"
            ) from None
        for name in names:
            if name in where:
                raise ConfigError("weights", f"tensor {name!r} is in more than one file")
            where[name] = file
    return where


def converter_for(hf: HFConfig) -> tuple[Converter, bool]:
    """The converter of the config's ``model_type`` and whether its class has an LM head."""
    model_type = hf.get("model_type")
    if not isinstance(model_type, str):
        raise hf.error(
            "model_type", f"expected a string, one of {supported_text()}; got {model_type!r}"
        )
    if model_type not in CONVERTERS:
        raise hf.error("model_type", f"unsupported {model_type!r}; supported: {supported_text()}")
    converter = CONVERTERS.get(model_type)
    archs = hf.get("architectures") or []
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        raise hf.error("architectures", f"expected a list of class names, got {archs!r}")
    unknown = [a for a in archs if a not in converter.architectures]
    if unknown:
        raise hf.error(
            "architectures",
            f"unsupported {unknown[0]!r}; supported: {supported_text()}",
        )
    # No `architectures` field: whether there is a head is left to the tensors (see `tied`).
    has_head = any(converter.architectures[a] for a in archs)
    return converter, has_head


def check_shapes(cfg: ModelConfig, state: dict[str, Tensor]) -> None:
    """Every tensor the model needs, at its shape; a mis-shaped one is a ConfigError.

    Checked against a ``meta`` model (shapes only, no memory) before any weight is placed.
    """
    with torch.device("meta"):
        expected = Transformer(cfg, init=False).state_dict()
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    assert not missing and not extra, f"converter bug: missing {missing}, unexpected {extra}"
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise ConfigError(
                "weights",
                f"{name}: checkpoint tensor has shape {tuple(tensor.shape)}, but config.json "
                f"implies {tuple(expected[name].shape)}",
            )


def from_hf(
    path: str | Path, *, attention: str = "sdpa", dtype: torch.dtype = torch.float32
) -> tuple[Transformer, ModelConfig]:
    """Load a local Hugging Face checkpoint folder as the equivalent resnorm model.

    Args:
        path: a folder with ``config.json`` and ``*.safetensors`` (sharded or not). No network.
        attention: the resnorm attention path, ``sdpa`` or ``eager`` (same numbers).
        dtype: the parameters' dtype after loading (checkpoint tensors are cast; Gemma-2's
            ``1 + w`` gains are formed in fp32 first).

    Returns:
        ``(model, cfg)``: the model in eval mode, with every parameter from the checkpoint, and
        its config. Dropout is 0 (``transformers`` keeps per-site rates resnorm does not have).

    Raises:
        ConfigError: a missing folder, config or weights; an unsupported ``model_type`` or
            architecture (the message lists the supported ones); a config field resnorm cannot
            represent (named in the error); a missing, extra or mis-shaped tensor.
    """
    folder = Path(path)
    hf = read_config(folder)
    converter, has_head = converter_for(hf)
    tensors = Tensors(weight_files(folder), converter.prefix, str(folder))
    kwargs: dict[str, Any] = converter.config(hf, tensors, has_head)
    try:
        cfg = ModelConfig(**kwargs, attention=attention)
    except ConfigError as err:  # a size past resnorm's bounds, an impossible head split, ...
        raise ConfigError(
            "config.json", f"{hf.source} describes a model resnorm refuses: {err}"
        ) from None

    state = converter.weights(tensors, kwargs)
    tensors.discard(converter.ignore)
    tensors.finish()
    check_shapes(cfg, state)
    for name in list(state):  # cast one at a time, so two copies of the weights never coexist
        state[name] = state[name].to(dtype)
    # Built on ``meta`` and filled with the checkpoint's own tensors: no init is computed.
    model = build_loaded(cfg, state)
    return model.to(dtype).eval(), cfg  # the rotary tables too (parameters are already dtype)
