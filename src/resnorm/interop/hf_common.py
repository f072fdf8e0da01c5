"""Shared pieces of the Hugging Face loaders: a checked reader of ``config.json`` fields, a
consuming view of the checkpoint's tensors, and the per-architecture converter record.

Each converter (``hf_gpt2``, ``hf_bert``, ``hf_llama``) turns an `HFConfig` into `ModelConfig`
keyword arguments and the checkpoint's tensors into a resnorm state dict. Fields a converter does
not read (dropouts, token ids, ``use_cache``, ...) do not change the forward pass of a loaded model.
A field that does, and that resnorm cannot represent, raises a `ConfigError` naming it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from resnorm.errors import ConfigError
from resnorm.load import SafetensorsFile
from resnorm.registry import Registry

# Hugging Face activation names -> resnorm `mlp` values (tanh-approximate GELU has two names).
PLAIN_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
}
GATED_ACTIVATIONS = {
    "silu": "swiglu",
    "swish": "swiglu",
    "gelu_pytorch_tanh": "geglu",
    "gelu_new": "geglu",
}
# TensorFlow-era parameter names, renamed on load as `transformers` does ("legacy" renamings).
LEGACY_NAMES = ((".LayerNorm.gamma", ".LayerNorm.weight"), (".LayerNorm.beta", ".LayerNorm.bias"))


class HFConfig:
    """The fields of one ``config.json``, read with type checks.

    An absent field takes the default of the Hugging Face config class (that is how
    ``transformers`` itself reads a config saved without it); a field present with the wrong type,
    or required and absent, raises a `ConfigError` named ``config.json.<field>``.
    """

    def __init__(self, data: Mapping[str, Any], source: str) -> None:
        self.data, self.source = dict(data), source

    def field(self, key: str) -> str:
        return f"config.json.{key}"

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.field(key), f"{message} (in {self.source})")

    def get(self, key: str, default: Any = None) -> Any:
        """The raw value; ``default`` only when the key is absent (an explicit null stays None)."""
        return self.data.get(key, default)

    def require(self, key: str) -> int:
        """A required positive integer (a size)."""
        if key not in self.data:
            raise self.error(key, "required field is missing")
        return self.integer(key, 0)

    def integer(self, key: str, default: int) -> int:
        """A positive integer, ``default`` when absent; null is an error."""
        value = self.optional_int(key, default)
        if value is None:
            raise self.error(key, "expected a positive integer, got null")
        return value

    def optional_int(self, key: str, default: int | None) -> int | None:
        value = self.data.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.error(key, f"expected a positive integer, got {value!r}")
        return value

    def number(self, key: str, default: float | None) -> float | None:
        value = self.data.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e300:
            raise self.error(key, f"expected a finite positive number, got {value!r}")
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if value is None:  # HF treats an explicit null flag as unset (False)
            return False
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {value!r}")
        return value

    def string(self, key: str, default: str) -> str:
        value = self.data.get(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {value!r}")
        return value

    def expect(self, key: str, allowed: Iterable[Any], default: Any, why: str) -> None:
        """Reject a feature: the field must be absent or one of ``allowed``."""
        allowed = tuple(allowed)
        value = self.data.get(key, default)
        if value not in allowed:
            shown = " or ".join(repr(a) for a in allowed)
            raise self.error(key, f"{value!r} is not supported ({why}); expected {shown}")

    def activation(
        self, key: str, default: str, *, gated: bool, fallback: str | None = None
    ) -> str:
        """The resnorm ``mlp`` for the activation in ``key`` (or ``fallback`` if that is unset)."""
        value = self.data.get(key)
        if value is None and fallback is not None:
            key, value = fallback, self.data.get(fallback)
        value = default if value is None else value
        table = GATED_ACTIVATIONS if gated else PLAIN_ACTIVATIONS
        if value not in table:
            kind = "gated feed-forward" if gated else "feed-forward"
            raise self.error(
                key,
                f"activation {value!r} is not supported in a {kind}; supported: "
                + ", ".join(sorted(table)),
            )
        return table[value]

    def rope_theta(self) -> float:
        """The RoPE base of a default (unscaled) rotary embedding.

        As in ``transformers``' ``convert_rope_params_to_dict``: the parameters are
        ``rope_scaling`` (legacy) or ``rope_parameters``; ``rope_theta`` inside them wins over a
        top-level ``rope_theta``, which wins over 10000. Any scaled RoPE type, a partial rotary
        factor or an unknown key raises, since resnorm implements plain RoPE only.
        """
        key = "rope_scaling" if self.data.get("rope_scaling") else "rope_parameters"
        params = self.data.get(key) or {}
        if not isinstance(params, dict):
            raise self.error(key, f"expected an object, got {params!r}")
        rope_type = params.get("rope_type", params.get("type", "default"))
        if rope_type != "default":
            raise self.error(key, f"rope_type {rope_type!r} is not supported; only 'default' RoPE")
        extra = sorted(set(params) - {"rope_type", "type", "rope_theta", "partial_rotary_factor"})
        if extra:
            raise self.error(key, f"unsupported RoPE parameters {extra}")
        partial = params.get("partial_rotary_factor", self.data.get("partial_rotary_factor"))
        if partial not in (None, 1, 1.0):
            raise self.error("partial_rotary_factor", f"{partial!r} is not supported; expected 1.0")
        theta = params.get("rope_theta", self.data.get("rope_theta", 10000.0))
        if isinstance(theta, bool) or not isinstance(theta, int | float) or not theta > 0:
            raise self.error(key, f"rope_theta must be a positive number, got {theta!r}")
        return float(theta)


class Tensors:
    """The checkpoint's tensors, consumed by name as they are mapped (each read from its file
    when taken, with `resnorm.load.SafetensorsFile`: no mapped file, no second copy).

    Names are read with the base-model prefix (``model.``, ``transformer.``, ``bert.``) removed
    where present, and TensorFlow-era ``LayerNorm.gamma``/``.beta`` renamed ``.weight``/``.bias``
    (as ``transformers`` does for old BERT checkpoints). Whatever is neither taken nor discarded
    by the end is an unmapped feature and raises (see `finish`), so a checkpoint never loads with
    part of it silently dropped.
    """

    def __init__(self, files: Mapping[str, Path], prefix: str, source: str) -> None:
        self.source = source
        self._left: dict[str, tuple[str, Path]] = {}  # short name -> (stored name, file)
        self._files: dict[Path, SafetensorsFile] = {}
        for name, file in files.items():
            short = name.removeprefix(prefix + ".")
            for legacy, modern in LEGACY_NAMES:
                if short.endswith(legacy):
                    short = short.removesuffix(legacy) + modern
            if short in self._left:
                raise ConfigError("weights", f"tensor {short!r} appears twice in {source}")
            self._left[short] = (name, file)

    def has(self, name: str) -> bool:
        return name in self._left

    def take(self, name: str) -> Tensor:
        """Remove and return tensor ``name``; a ConfigError if the checkpoint lacks it."""
        try:
            stored, file = self._left.pop(name)
        except KeyError:
            raise ConfigError("weights", f"missing tensor {name!r} in {self.source}") from None
        if file not in self._files:
            self._files[file] = SafetensorsFile(file)
        try:
            tensor = self._files[file].read(stored)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ConfigError("weights", f"{file}: cannot read tensor {stored!r} ({err})") from None
        if not tensor.is_floating_point():  # every mapped tensor is a weight (buffers are ignored)
            raise ConfigError(
                "weights",
                f"{file}: tensor {stored!r} has dtype {str(tensor.dtype).removeprefix('torch.')}; "
                "a weight must be floating-point (a damaged or foreign checkpoint)",
            )
        return tensor

    def discard(self, patterns: Iterable[str]) -> None:
        """Drop tensors with no resnorm counterpart (glob patterns: poolers, stale buffers)."""
        patterns = tuple(patterns)
        for name in [n for n in self._left if any(fnmatch.fnmatchcase(n, p) for p in patterns)]:
            del self._left[name]

    def finish(self) -> None:
        if self._left:
            names = sorted(self._left)
            shown = ", ".join(repr(n) for n in names[:5]) + (" ..." if len(names) > 5 else "")
            raise ConfigError(
                "weights",
                f"{len(names)} tensor(s) in {self.source} have no resnorm counterpart ({shown}): "
                "the checkpoint uses a feature this loader does not map",
            )


def linear(out: dict[str, Tensor], dst: str, t: Tensors, src: str, *, bias: bool) -> None:
    """Copy ``src.weight`` (and ``src.bias``) to ``dst``: an ``nn.Linear`` or a norm's gain."""
    out[f"{dst}.weight"] = t.take(f"{src}.weight")
    if bias:
        out[f"{dst}.bias"] = t.take(f"{src}.bias")


def lm_head(
    out: dict[str, Tensor], cfg_tied: bool, t: Tensors, src: str = "lm_head.weight"
) -> None:
    """The output head: the checkpoint's own matrix, or the token embeddings when tied.

    A tied checkpoint may still store a copy of the head; ``transformers`` overwrites it with the
    embeddings on load, and so does this loader.
    """
    if cfg_tied:
        if t.has(src):
            t.take(src)
        out["lm_head.weight"] = out["embed.tok.weight"]
    else:
        out["lm_head.weight"] = t.take(src)


def tied(
    hf: HFConfig, t: Tensors, default: bool, has_head: bool, src: str = "lm_head.weight"
) -> bool:
    """Whether the resnorm head is tied to the token embeddings.

    ``tie_word_embeddings`` decides for a model with a head. A head-less base model (``GPT2Model``,
    ``LlamaModel``, ...) stores no head matrix: its resnorm head is then tied to the embeddings.
    """
    if hf.flag("tie_word_embeddings", default):
        return True
    return not has_head and not t.has(src)


ConfigFn = Callable[[HFConfig, Tensors, bool], dict[str, Any]]
WeightsFn = Callable[[Tensors, dict[str, Any]], dict[str, Tensor]]


@dataclass(frozen=True)
class Converter:
    """How one Hugging Face ``model_type`` maps onto resnorm.

    Attributes:
        model_type: the ``config.json`` ``model_type``.
        architectures: supported ``architectures`` entries -> whether that class has an LM head.
        prefix: the base-model prefix of tensor names (``model``, ``transformer``, ``bert``).
        config: ``(hf, tensors, has_head) -> ModelConfig`` keyword arguments.
        weights: ``(tensors, model_kwargs) -> resnorm state dict``, taking what it maps.
        ignore: glob patterns (after the prefix) of tensors with no resnorm counterpart.
    """

    model_type: str
    architectures: Mapping[str, bool]
    prefix: str
    config: ConfigFn
    weights: WeightsFn
    ignore: tuple[str, ...] = ()


CONVERTERS: Registry[Converter] = Registry("Hugging Face model_type")


def register(converter: Converter) -> Converter:
    return CONVERTERS.register(converter.model_type)(converter)
